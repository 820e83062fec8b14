"""The judge: compares what a student's function returned with the reference.

One code path for the student's self-check and for the grader. Both go through a
*record* (``course_lib.checks.run_cases``: the function's outputs per case as float64
arrays, or the exception it raised); the judge decodes a record defensively (it may
have been written by hostile code), recomputes the reference outputs itself, and
returns a ``Verdict``:

* pass: every output of every case has the reference's structure and shape, is
  finite where the reference is, and is within ``atol + rtol * |reference|``;
* otherwise, if the outputs match one of the exercise's catalogued ``Mistake``s on
  every case: "looks like: <name>. <explanation> Read: <section>";
* otherwise: the first wrong output, expected vs given shape, max abs and rel error.

Student objects are never compared with ``==``: the kernel side already turned every
output into float64 arrays, and here only NumPy arithmetic on those arrays happens.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from course_lib import checks

from . import registry

MAX_DEPTH = 6
MAX_LEAVES = 256


@dataclass
class Verdict:
    passed: bool
    message: str
    name: str = ""
    mistake: str | None = None  # the catalogued mistake it looks like
    kind: str = "pass"  # pass | mistake | wrong | raised | not_implemented | no_record | bad_record
    details: dict = field(default_factory=dict)


class BadRecord(ValueError):
    """A record that is not what ``course_lib.checks.run_cases`` writes."""


# ---------------------------------------------------------------------------- records
def _tree(desc, arrays, depth=0, count=None):
    count = count if count is not None else [0]
    if depth > MAX_DEPTH or not isinstance(desc, dict):
        raise BadRecord("output structure too deep or malformed")
    t = desc.get("t")
    if t == "leaf":
        count[0] += 1
        if count[0] > MAX_LEAVES:
            raise BadRecord("too many outputs")
        key = desc.get("key")
        arr = arrays.get(key) if isinstance(key, str) else None
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float64:
            raise BadRecord("output array missing or not float64")
        return ("leaf", arr)
    if t == "seq":
        items = desc.get("items")
        if not isinstance(items, list):
            raise BadRecord("malformed sequence")
        return ("seq", [_tree(d, arrays, depth + 1, count) for d in items])
    if t == "dict":
        keys, items = desc.get("keys"), desc.get("items")
        if not (isinstance(keys, list) and isinstance(items, list) and len(keys) == len(items)
                and all(isinstance(k, str) for k in keys)):
            raise BadRecord("malformed dict")
        return ("dict", dict(zip(keys, [_tree(d, arrays, depth + 1, count) for d in items])))
    if t == "bad":
        return ("bad", str(desc.get("type", "?"))[:100])
    raise BadRecord(f"unknown output kind {t!r}")


def parse_record(data: bytes, n_cases: int) -> list:
    """Record bytes -> per case ("ok", tree) or ("raised", message, not_implemented)."""
    try:
        meta, arrays = checks.decode(data)
    except Exception as exc:  # noqa: BLE001 - garbled file, pickles, wrong format
        raise BadRecord(f"unreadable record ({type(exc).__name__})") from None
    results = meta.get("results")
    if not isinstance(results, list) or len(results) != n_cases:
        raise BadRecord("record does not have one result per case")
    out = []
    for r in results:
        if not isinstance(r, dict):
            raise BadRecord("malformed result")
        if r.get("status") == "raised":
            out.append(("raised", str(r.get("error", ""))[:2000], bool(r.get("not_implemented"))))
        elif r.get("status") == "ok":
            out.append(("ok", _tree(r.get("out"), arrays)))
        else:
            raise BadRecord("malformed result status")
    return out


def outputs_of(fn, cases: list[dict]) -> list:
    """Run a trusted function (reference or mistake) through the same record path."""
    return parse_record(checks.run_cases(fn, cases), len(cases))


# ---------------------------------------------------------------------------- compare
def _label(path: list, output_names) -> str:
    parts = []
    for depth, p in enumerate(path):
        if depth == 0 and isinstance(p, int):
            if output_names and p < len(output_names):
                parts.append(str(output_names[p]))
            else:
                parts.append(f"output {p}")
        elif isinstance(p, int):
            parts.append(f"[{p}]")
        elif not parts:
            parts.append(str(p))
        else:
            parts.append(f"[{p!r}]")
    return "".join(parts) if parts else "the returned value"


def _shape(node) -> str:
    kind = node[0]
    if kind == "leaf":
        return str(tuple(node[1].shape)) if node[1].ndim else "a scalar"
    if kind == "seq":
        return f"a sequence of {len(node[1])}"
    if kind == "dict":
        return f"a dict with keys {sorted(node[1])}"
    return f"a {node[1]}"


def compare(ref, stu, rtol: float, atol: float, path=None):
    """None if ``stu`` matches ``ref`` (trees), else a dict describing the first mismatch."""
    path = path or []
    if ref[0] == "leaf" and stu[0] == "seq" and all(s[0] == "leaf" for s in stu[1]):
        try:  # a list of arrays where one array was expected
            stu = ("leaf", np.stack([s[1] for s in stu[1]]))
        except ValueError:
            pass
    if ref[0] != stu[0]:
        return {"path": path, "reason": "type", "expected": _shape(ref), "given": _shape(stu)}
    if ref[0] == "seq":
        if len(ref[1]) != len(stu[1]):
            return {"path": path, "reason": "length", "expected": _shape(ref), "given": _shape(stu)}
        for i, (r, s) in enumerate(zip(ref[1], stu[1])):
            m = compare(r, s, rtol, atol, path + [i])
            if m:
                return m
        return None
    if ref[0] == "dict":
        missing = [k for k in ref[1] if k not in stu[1]]
        if missing:
            return {"path": path + [missing[0]], "reason": "missing key",
                    "expected": "present", "given": "missing"}
        for k, r in ref[1].items():
            m = compare(r, stu[1][k], rtol, atol, path + [k])
            if m:
                return m
        return None
    if ref[0] == "bad":
        return None
    r, s = ref[1], stu[1]
    if r.shape != s.shape:
        if r.size == 1 and s.size == 1:
            s = s.reshape(r.shape)
        else:
            return {"path": path, "reason": "shape", "expected": _shape(ref), "given": _shape(stu)}
    with np.errstate(all="ignore"):
        finite_r = np.isfinite(r)
        bad = finite_r & ~np.isfinite(s)
        if bad.any():
            return {"path": path, "reason": "not finite", "expected": _shape(ref),
                    "given": _shape(stu), "count": int(bad.sum())}
        err = np.where(finite_r, np.abs(s - r), 0.0)
        ok = err <= atol + rtol * np.abs(np.where(finite_r, r, 0.0))
        same_nonfinite = np.where(finite_r, True, (r == s) | (np.isnan(r) & np.isnan(s)))
        if ok.all() and same_nonfinite.all():
            return None
        max_abs = float(err.max()) if err.size else 0.0
        rel = err / np.maximum(np.abs(np.where(finite_r, r, 0.0)), 1e-12)
        max_rel = float(rel.max()) if rel.size else 0.0
    return {"path": path, "reason": "values", "expected": _shape(ref), "given": _shape(stu),
            "max_abs": max_abs, "max_rel": max_rel}


# ---------------------------------------------------------------------------- verdicts
def _describe_case(case: dict) -> str:
    parts = []
    for k, v in case.items():
        if isinstance(v, np.ndarray):
            parts.append(f"{k} shape {tuple(v.shape)}")
        elif isinstance(v, dict):
            parts.append(f"{k} ({len(v)} arrays)")
        elif isinstance(v, (int, float, str, bool)):
            parts.append(f"{k}={v!r}")
    return ", ".join(parts)


def _mismatch_text(m: dict, output_names) -> str:
    label = _label(m["path"], output_names)
    reason = m["reason"]
    if reason in ("type", "length"):
        return f"{label}: expected {m['expected']}, got {m['given']}"
    if reason == "missing key":
        return f"{label} is missing from the returned dict"
    if reason == "shape":
        return f"{label} has the wrong shape: expected {m['expected']}, got {m['given']}"
    if reason == "not finite":
        return f"{label} contains NaN or inf ({m['count']} entries) where the reference is finite"
    return (f"{label} is wrong: shape {m['given']} as expected, but max abs error "
            f"{m['max_abs']:.3g}, max rel error {m['max_rel']:.3g}")


def judge(exercise, cases: list[dict], results: list, hidden: bool = False) -> Verdict:
    """Judge parsed record ``results`` of ``exercise`` on ``cases``."""
    name = exercise.name
    which = "hidden" if hidden else "visible"
    rtol, atol = float(exercise.rtol), float(exercise.atol)
    output_names = getattr(exercise, "output_names", None)
    section = getattr(exercise, "section", "")
    refs = outputs_of(exercise.reference, cases)
    first = None
    for i, (res, ref) in enumerate(zip(results, refs)):
        if ref[0] != "ok":
            raise RuntimeError(f"reference of {name} failed on {which} case {i + 1}: {ref[1]}")
        if res[0] == "raised":
            if res[2]:
                return Verdict(False, f"{name} is not implemented yet (it raises "
                               f"NotImplementedError). Read: {section}", name,
                               kind="not_implemented")
            where = f"case {i + 1} of {len(cases)}" if not hidden else f"hidden case {i + 1}"
            return Verdict(False, f"{name} raised {res[1]} on {which} {where}. Read: {section}",
                           name, kind="raised", details={"error": res[1]})
        m = compare(ref[1], res[1], rtol, atol)
        if m and first is None:
            first = (i, m)
    if first is None:
        return Verdict(True, f"{name}: passed ({len(cases)} {which} "
                       f"case{'s' if len(cases) != 1 else ''})", name)
    for mistake in getattr(exercise, "mistakes", ()) or ():
        try:
            wrong = outputs_of(mistake.fn, cases)
        except Exception:  # noqa: BLE001 - a broken catalogue entry is not the student's fault
            continue
        if all(w[0] == "ok" and r[0] == "ok" and compare(w[1], r[1], rtol, atol) is None
               for w, r in zip(wrong, results)):
            return Verdict(
                False, f"{name} is wrong. Looks like: {mistake.name}. {mistake.explanation} "
                f"Read: {mistake.section}", name, mistake=mistake.name, kind="mistake")
    i, m = first
    where = (f"hidden case {i + 1} of {len(cases)} (you pass the visible cases)" if hidden
             else f"case {i + 1} of {len(cases)} ({_describe_case(cases[i])})")
    return Verdict(False, f"{name} is wrong on {where}: {_mismatch_text(m, output_names)}. "
                   f"Read: {section}", name, kind="wrong",
                   details={k: v for k, v in m.items() if k != "path"})


def judge_record(exercise, cases: list[dict], data: bytes | None, hidden: bool = False) -> Verdict:
    """Judge raw record bytes (None: no record was written). Fails closed."""
    name = exercise.name
    if data is None:
        return Verdict(False, f"{name}: no result was recorded for the "
                       f"{'hidden' if hidden else 'visible'} cases (the test cell did not "
                       "run to its check, or the notebook stopped before it): 0 points.",
                       name, kind="no_record")
    try:
        results = parse_record(data, len(cases))
    except BadRecord as exc:
        return Verdict(False, f"{name}: the recorded result is invalid ({exc}): 0 points.",
                       name, kind="bad_record")
    return judge(exercise, cases, results, hidden=hidden)


# ---------------------------------------------------------------------------- cases
SALT_FILE = os.path.join("grader", "secret", "hidden-cases-salt")


def grading_salt(root: str | os.PathLike | None = None) -> str:
    """The course's secret for hidden cases, made on first use.

    Kept in ``<course root>/grader/secret/hidden-cases-salt`` (folder 0700, file 0600:
    readable by the instructor only; the grading kernel never sees grader/ nor gets
    it in its environment). The course root is ``root``, else ``$COURSE_ROOT``, else
    this repository. Without it nobody can predict a student's hidden cases; keep it
    with the gradebook (a new salt draws new hidden cases)."""
    import secrets

    base = root or os.environ.get("COURSE_ROOT") or Path(__file__).resolve().parent.parent
    path = Path(base, SALT_FILE)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if not path.exists():  # write aside, then link: concurrent graders agree on one salt
        fd, tmp = tempfile.mkstemp(dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as fh:
        salt = fh.read(4096).strip()
    if len(salt) < 32:
        raise RuntimeError(f"{path} is damaged (too short): delete it to make a new salt")
    return salt


def hidden_seed(student: str, assignment: str, salt: str) -> int:
    """Seed of a student's hidden cases: the same on every re-run, different per student."""
    digest = hashlib.sha256(f"{salt}\x00{student}\x00{assignment}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def cases_for(exercise, hidden: bool, seed: int = 0) -> list[dict]:
    if not hidden:
        return list(exercise.visible_cases())
    return list(exercise.hidden_cases(np.random.default_rng(seed)))


def self_check(assignment: str, name: str, fn, hidden: bool = False) -> Verdict:
    """Student mode of ``course_lib.checks.check``: judge ``fn`` right here."""
    exercise = registry.exercise(assignment, name)
    # outside grading the hidden cases come from a fixed seed (only the instructor's
    # notebook has hidden checks; the grader draws its own per student)
    cases = cases_for(exercise, hidden, seed=hidden_seed("self-check", assignment, "local"))
    return judge_record(exercise, cases, checks.run_cases(fn, cases), hidden=hidden)
