"""The judge: compares what a student's function returned with the expected outputs.

One code path for the notebook's self-check, ``python -m grader check`` and the
grader. Each goes through a *record* (``course_lib.checks.run_cases``: the outputs per
case as float64 arrays, the inputs the function changed, or the exception it raised);
``parse_record`` decodes it defensively (hostile code may have written it) and
``judge`` returns a ``Verdict``. The grader computes the expected outputs in its own
process (``grader.judge``); the notebook reads them from the data file that
``tools/author_assignments.py`` writes from the same registry
(``course_lib/data/checks/<assignment>.npz``), so the student library needs nothing
from the grader.

Tolerance model (one rule for every exercise):

* every output array (each leaf of the returned tuple/dict) is compared on its own,
  scaled to its own size: it passes when ``max |given - expected| <= atol + rtol *
  max |expected|`` (``rtol = 1e-4``, ``atol = 1e-9`` unless an exercise says
  otherwise), with non-finite entries required where, and only where, the expected
  output has them; to that tolerance is added NOISE_FACTOR (20) times how far the
  reference itself moves when run on float32 copies of the inputs (outputs that
  cancel, like a sum of large terms, are sensitive to rounding). float32 arithmetic
  loses about 1e-7 relative to the largest value of a computation, up to a few 1e-5
  after the products of a BPTT pass, so any correct method evaluated in float32 (and
  cast back) passes; every catalogued mistake is off by 1e-2 or more of the output's
  size (tests/test_fairness.py asserts honest errors below half the tolerance and
  mistakes above 100 times it, on every case set of 100 students);
* a training loop is compared by what it changed: the "updates" of an exercise's
  ``updates_of`` outputs are ``returned - input`` (an error in a gradient is not hidden
  by a small learning rate next to large parameters);
* a function that modifies an input fails, naming the input.

Diagnosis, when outputs are wrong, by what the numbers are (never by how the code is
written): the catalogued mistakes of the exercise are whole wrong implementations whose
outputs are computed on the same cases; the one that equals the student's outputs on
every case is named ("Looks like"); one that explains every wrong output is named as
likely; otherwise each wrong output is compared with transforms of the expected one
(transposed, sign-flipped, scaled by B, T, N or their inverses, reversed or shifted in
time, all zeros, normalised along the wrong axis) and the match is given as a guess.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from . import checks

MAX_DEPTH = 6
MAX_LEAVES = 256
RTOL = 1e-4
ATOL = 1e-9
NOISE_FACTOR = 20.0


@dataclass
class Verdict:
    passed: bool
    message: str
    name: str = ""
    mistake: str | None = None  # the catalogued mistake (or the transform) it looks like
    kind: str = "pass"  # pass | mistake | wrong | mutated | raised | not_implemented | no_record | bad_record
    confidence: str | None = None  # sure | likely | guess, when a diagnosis is given
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Spec:
    """What the judge needs to know about an exercise, as plain data."""
    name: str
    read: str                              # where to read, a sentence with a link
    output_names: tuple = ()
    rtol: float = RTOL
    atol: float = ATOL
    updates_of: tuple = ()                 # ((output key, input name), ...)


@dataclass(frozen=True)
class Candidate:
    """A catalogued wrong implementation and its outputs on the judged cases."""
    name: str
    explanation: str
    read: str
    outputs: list                          # parsed results, one per case


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


def parse_record(data: bytes, n_cases: int) -> tuple[list, list[str]]:
    """Record bytes -> (per case ("ok", tree, mutated) or ("raised", message,
    not_implemented), notes)."""
    try:
        meta, arrays = checks.decode(data)
    except Exception as exc:  # noqa: BLE001 - garbled file, pickles, wrong format
        raise BadRecord(f"unreadable record ({type(exc).__name__})") from None
    return parse_decoded(meta, arrays, n_cases)


def parse_decoded(meta: dict, arrays: dict, n_cases: int) -> tuple[list, list[str]]:
    """``parse_record`` after the bytes were decoded."""
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
            mutated = r.get("mutated") or []
            if not (isinstance(mutated, list) and all(isinstance(m, str) for m in mutated)):
                raise BadRecord("malformed list of changed inputs")
            out.append(("ok", _tree(r.get("out"), arrays), [m[:200] for m in mutated[:20]]))
        else:
            raise BadRecord("malformed result status")
    notes = meta.get("notes") or []
    if not (isinstance(notes, list) and all(isinstance(n, str) for n in notes)):
        raise BadRecord("malformed notes")
    return out, [n[:500] for n in notes[:checks.MAX_NOTES]]


def _to_float32(x):
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return x.astype(np.float32)
    if isinstance(x, dict):
        return {k: _to_float32(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_float32(v) for v in x)
    return x


def in_float32(fn):
    """``fn`` fed float32 copies of its array inputs (its arithmetic then runs in
    float32 as far as its code keeps that precision)."""
    def wrapped(*args):
        return fn(*[_to_float32(a) for a in args])
    return wrapped


def outputs_of(fn, cases: list[dict]) -> list:
    """Run a trusted function (reference or mistake) through the same record path
    (without the byte encoding, which only the kernel's records need)."""
    return parse_decoded(*checks.run_cases_unencoded(fn, cases), len(cases))[0]


# ---------------------------------------------------------------------------- compare
def label(path, output_names=()) -> str:
    parts = []
    for depth, p in enumerate(path):
        if depth == 0 and isinstance(p, int):
            parts.append(str(output_names[p]) if p < len(output_names) else f"output {p}")
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
        return str(tuple(node[1].shape)) if node[1].size != 1 or node[1].ndim > 1 else "a number"
    if kind == "seq":
        return f"a sequence of {len(node[1])}"
    if kind == "dict":
        return f"a dict with keys {sorted(node[1])}"
    return f"a {node[1]}"


def _as_leaf(ref, stu):
    """A list of arrays where one array was expected counts as that array."""
    if ref[0] == "leaf" and stu[0] == "seq" and stu[1] and all(s[0] == "leaf" for s in stu[1]):
        try:
            return ("leaf", np.stack([s[1] for s in stu[1]]))
        except ValueError:
            pass
    return stu


def tolerance(r: np.ndarray, rtol: float, atol: float, noise: np.ndarray | None = None) -> float:
    """atol + rtol * max|r| + NOISE_FACTOR * max(noise) (finite entries only)."""
    with np.errstate(all="ignore"):
        size = np.abs(r).max(initial=0.0)
        if not np.isfinite(size):
            size = np.abs(np.where(np.isfinite(r), r, 0.0)).max(initial=0.0)
        tol = atol + rtol * float(size)
        if noise is not None and noise.size:
            largest = noise.max()
            if not np.isfinite(largest):
                largest = np.where(np.isfinite(noise), noise, 0.0).max()
            tol += NOISE_FACTOR * float(largest)
    return tol


def noise_tree(ref, ref32):
    """Per leaf of ``ref``: |ref32 - ref|, how far float32 arithmetic moved it (None
    where the structures differ)."""
    if ref32 is None or ref[0] != ref32[0]:
        return None
    if ref[0] == "leaf":
        if ref32[1].shape != ref[1].shape:
            return None
        with np.errstate(all="ignore"):
            return ("leaf", np.abs(ref32[1] - ref[1]))
    if ref[0] == "seq" and len(ref[1]) == len(ref32[1]):
        return ("seq", [noise_tree(a, b) for a, b in zip(ref[1], ref32[1])])
    if ref[0] == "dict":
        return ("dict", {k: noise_tree(v, ref32[1].get(k)) for k, v in ref[1].items()})
    return None


def leaf_error(r: np.ndarray, s: np.ndarray, rtol: float, atol: float,
               noise: np.ndarray | None = None) -> dict | None:
    """None if ``s`` is within tolerance of ``r`` (same shape), else error sizes.
    ``noise``: how far float32 arithmetic moves this output; NOISE_FACTOR times its
    largest entry is added to the tolerance (ill-conditioned outputs)."""
    with np.errstate(all="ignore"):
        diff = np.abs(s - r)
        if np.isfinite(diff).all():  # the common case: everything finite
            max_abs = float(diff.max(initial=0.0))
            tol = tolerance(r, rtol, atol, noise)
            if max_abs <= tol:
                return None
            scale = float(np.abs(r).max(initial=0.0))
            return {"reason": "values", "max_abs": max_abs, "scale": scale, "tol": tol,
                    "ratio": max_abs / tol if tol > 0 else float("inf")}
        finite_r = np.isfinite(r)
        if (finite_r & ~np.isfinite(s)).any():
            return {"reason": "not finite", "count": int((finite_r & ~np.isfinite(s)).sum())}
        same_nonfinite = np.where(finite_r, True, (r == s) | (np.isnan(r) & np.isnan(s)))
        err = np.where(finite_r, np.abs(s - r), 0.0)
        scale = float(np.abs(np.where(finite_r, r, 0.0)).max(initial=0.0))
        tol = tolerance(r, rtol, atol, noise)
        max_abs = float(err.max()) if err.size else 0.0
        if max_abs <= tol and same_nonfinite.all():
            return None
        return {"reason": "values", "max_abs": max_abs, "scale": scale, "tol": tol,
                "ratio": max_abs / tol if tol > 0 else float("inf")}


def mismatches(ref, stu, rtol: float, atol: float, path=(), noise=None) -> list[dict]:
    """Every difference between the trees ``ref`` and ``stu`` (empty: they match).
    ``noise``: a ``noise_tree`` of the expected outputs, see ``leaf_error``."""
    stu = _as_leaf(ref, stu)
    if noise is not None and noise[0] != ref[0]:
        noise = None
    if ref[0] == "bad":
        return []
    if ref[0] != stu[0]:
        return [{"path": path, "reason": "type", "expected": _shape(ref), "given": _shape(stu)}]
    if ref[0] == "seq":
        if len(ref[1]) != len(stu[1]):
            return [{"path": path, "reason": "length", "expected": _shape(ref),
                     "given": _shape(stu)}]
        subs = noise[1] if noise is not None and len(noise[1]) == len(ref[1]) else [None] * len(ref[1])
        return [m for i, (r, s, z) in enumerate(zip(ref[1], stu[1], subs))
                for m in mismatches(r, s, rtol, atol, path + (i,), z)]
    if ref[0] == "dict":
        out = [{"path": path + (k,), "reason": "missing key"} for k in ref[1] if k not in stu[1]]
        return out + [m for k, r in ref[1].items() if k in stu[1]
                      for m in mismatches(r, stu[1][k], rtol, atol, path + (k,),
                                          noise[1].get(k) if noise is not None else None)]
    r, s = ref[1], stu[1]
    if r.shape != s.shape:
        if r.size == 1 and s.size == 1:
            s = s.reshape(r.shape)
        else:
            return [{"path": path, "reason": "shape", "expected": _shape(ref),
                     "given": _shape(stu), "ref": r, "stu": s}]
    err = leaf_error(r, s, rtol, atol, noise[1] if noise is not None else None)
    if err is None:
        return []
    return [dict(err, path=path, expected=_shape(ref), ref=r, stu=s)]


def as_updates(tree, case: dict, updates_of) -> tuple:
    """Replace each ``(output key, input name)`` of a dict output by output - input."""
    if tree[0] != "dict" or not updates_of:
        return tree
    items = dict(tree[1])
    for key, input_name in updates_of:
        node, before = items.get(key), case.get(input_name)
        if node is None or node[0] != "dict" or not isinstance(before, dict):
            continue
        items[key] = ("dict", {
            k: ("leaf", v[1] - np.asarray(before[k], dtype=np.float64))
            if v[0] == "leaf" and k in before and np.shape(before[k]) == v[1].shape else v
            for k, v in node[1].items()})
    return ("dict", items)


# ---------------------------------------------------------------------------- diagnosis
def _close(a: np.ndarray, b: np.ndarray, rtol: float) -> bool:
    if a.shape != b.shape or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return False
    return float(np.abs(a - b).max(initial=0.0)) <= 1e-12 + 10 * rtol * float(
        np.abs(b).max(initial=0.0))


def _factors(dims: dict) -> list[tuple[str, float]]:
    """Named factors a wrong answer may be off by: B, 1/B, T*B, 2, 1/2, ..."""
    named = [(k, float(v)) for k, v in dims.items() if isinstance(v, (int, float)) and v > 1]
    out = [("2", 2.0), ("1/2", 0.5)]
    for k, v in named:
        out += [(k, v), (f"1/{k}", 1 / v)]
    for i, (k1, v1) in enumerate(named):
        for k2, v2 in named[i + 1:]:
            out += [(f"{k1}*{k2}", v1 * v2), (f"1/({k1}*{k2})", 1 / (v1 * v2))]
    return out


SCALE_HINTS = {"B": "a sum over the batch where the mean is meant, or the reverse",
               "T": "a sum over time where the mean is meant, or the reverse",
               "N": "a sum over the examples where the mean is meant, or the reverse"}


def leaf_transforms(r: np.ndarray, s: np.ndarray, dims: dict, rtol: float) -> list[str]:
    """What ``s`` is, in terms of the expected ``r`` (keys stable across cases)."""
    found = []
    if not (np.isfinite(r).all() and np.isfinite(s).all()):
        return found
    r_max = float(np.abs(r).max(initial=0.0))
    if r_max == 0:
        return found
    if s.shape == r.shape and not np.any(s):
        found.append("is all zeros")
    if r.ndim == 2 and r.shape[0] != 1 and r.shape[1] != 1 and s.shape == r.T.shape \
            and not _close(r, r.T, rtol) and _close(s, r.T, rtol):
        found.append("is transposed")
    if s.ndim == r.ndim + 1 and s.shape[1:] == r.shape and _close(s.sum(axis=0), r, rtol):
        found.append("is not summed over its first axis (one row per example?)")
    if s.shape != r.shape:
        return found
    diff = s - r
    if r.size > 1 and not _close(s, r, rtol) and _close(diff, np.full_like(r, diff.flat[0]), rtol) \
            and abs(diff.flat[0]) > 10 * rtol * r_max:
        found.append(f"is off by a constant {diff.flat[0]:.4g}")
    if _close(s, r * r, rtol) and not _close(r * r, r, rtol):
        found.append("is the square of the right value")
    if _close(s, -r, rtol):
        found.append("has the opposite sign")
    rr = float(np.sum(r * r))
    c = float(np.sum(s * r)) / rr
    if abs(c) > 1e-12 and abs(c - 1) > 1e-3 and _close(s, c * r, rtol):
        for factor, value in _factors(dims):
            if abs(abs(c) - value) <= 1e-4 * value:
                found.append(f"is {'-' if c < 0 else ''}{factor} times the right value")
                break
    if r.ndim >= 1 and r.shape[0] >= 2 and not _close(r, r[::-1], rtol):
        if _close(s, r[::-1], rtol):
            found.append("is in reverse order (along its first axis)")
        if _close(s[1:], r[:-1], rtol) and not _close(s, r, rtol):
            found.append("is shifted one step later (along its first axis)")
        if _close(s[:-1], r[1:], rtol) and not _close(s, r, rtol):
            found.append("is shifted one step earlier (along its first axis)")
    if r.ndim == 2 and r.shape[0] > 1 and (r >= 0).all() and _close(r.sum(1), np.ones(len(r)), 1e-6) \
            and (s >= 0).all() and _close(s.sum(0), np.ones(r.shape[1]), 1e-6):
        found.append("is normalised along the wrong axis (columns sum to 1, not rows)")
    return found


def _hint(transform: str) -> str:
    for k, hint in SCALE_HINTS.items():
        if f" {k} times" in transform or f"1/{k} times" in transform:
            return f" ({hint}?)"
    return ""


def _wrong_leaves(refs, results, rtol, atol, noise):
    """{leaf path: [(case index, mismatch)]} of the values that are wrong."""
    wrong: dict = {}
    for i, (ref, res, z) in enumerate(zip(refs, results, noise)):
        for m in mismatches(ref[1], res[1], rtol, atol, (), z):
            wrong.setdefault(m["path"], []).append((i, m))
    return wrong


def _subtree(tree, path):
    for p in path:
        if tree[0] == "seq" and isinstance(p, int) and p < len(tree[1]):
            tree = tree[1][p]
        elif tree[0] == "dict" and p in tree[1]:
            tree = tree[1][p]
        else:
            return None
    return tree


def match_candidate(cand: Candidate, refs, results, wrong, rtol, atol, noise):
    """(level, explained paths): "sure" if the candidate's outputs equal the student's
    on every case; "likely" if they equal every wrong output (where the candidate is
    wrong too); "guess" if they equal some of the wrong outputs; else (None, [])."""
    outs = cand.outputs
    if any(o[0] != "ok" for o in outs):
        return None, []
    if all(not mismatches(o[1], res[1], rtol, atol, (), z)
           for o, res, z in zip(outs, results, noise)):
        return "sure", list(wrong)
    explained = []
    for path, where in wrong.items():
        ok = True
        for i, _ in where:
            c, s = _subtree(outs[i][1], path), _subtree(results[i][1], path)
            z = _subtree(noise[i], path) if noise[i] is not None else None
            if c is None or s is None or mismatches(c, s, rtol, atol, (), z) \
                    or not mismatches(_subtree(refs[i][1], path), c, rtol, atol, (), z):
                ok = False
                break
        if ok:
            explained.append(path)
    if not explained:
        return None, []
    return ("likely" if len(explained) == len(wrong) else "guess"), explained


def describe_case(case: dict, dims: dict, hidden: bool) -> str:
    """Shapes and settings of a case; values only for visible cases."""
    parts = [f"{k}={v}" for k, v in dims.items()]
    for k, v in case.items():
        if isinstance(v, (bool, str, int, np.integer)) or (
                not hidden and isinstance(v, float)):
            parts.append(f"{k}={v!r}")
    if not dims:
        parts += [f"{k} of shape {tuple(v.shape)}" for k, v in case.items()
                  if isinstance(v, np.ndarray)]
    return ", ".join(parts)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def mismatch_text(m: dict, output_names, show_values: bool) -> str:
    where = label(m["path"], output_names)
    reason = m["reason"]
    if reason in ("type", "length"):
        return f"{where}: expected {m['expected']}, got {m['given']}"
    if reason == "missing key":
        return f"{where} is missing from the returned dict"
    if reason == "shape":
        return f"{where} has the wrong shape: expected {m['expected']}, got {m['given']}"
    if reason == "not finite":
        return f"{where} contains NaN or inf ({m['count']} entries) where the expected value is finite"
    if m["expected"] == "a number" and show_values:
        return (f"{where} is {_fmt(float(m['stu'].ravel()[0]))}, expected "
                f"{_fmt(float(m['ref'].ravel()[0]))}")
    shape = "a number" if m["expected"] == "a number" else f"shape {m['expected']} as expected"
    if not show_values:  # a hidden case: sizes relative to the output, never its values
        return (f"{where} is wrong ({shape}): off by {_fmt(m['max_abs'] / m['scale'])} of "
                f"its size" if m["scale"] else f"{where} is wrong ({shape}): should be 0")
    # The allowance is rtol of the largest entry plus the float32 allowance (see the
    # module docstring), so its share of that entry is computed, not assumed.
    share = (f"{_fmt(m['tol'] / m['scale'])} of its largest expected entry, {_fmt(m['scale'])}"
             if m["scale"] else "its expected entries are all 0")
    return (f"{where} is wrong ({shape}): max abs error {_fmt(m['max_abs'])}, allowed "
            f"{_fmt(m['tol'])} ({share})")


def _which(i: int, n: int, case: dict, dims: dict, hidden: bool) -> str:
    kind = describe_case(case, dims, hidden)
    if hidden:
        return f"a hidden case ({kind}); you pass the visible cases"
    return f"case {i + 1} of {n} ({kind})"


def judge(spec: Spec, cases: list[dict], dims: list[dict], refs: list, results: list,
          candidates=(), hidden: bool = False, notes=(), accepted=(), refs32=()) -> Verdict:
    """Judge parsed ``results`` against the expected ``refs`` on ``cases``
    (``accepted``: expected outputs of other designs the contract also allows;
    ``refs32``: the reference computed in float32, for the tolerance)."""
    name, read, n = spec.name, spec.read, len(cases)
    which = "hidden" if hidden else "visible"
    note = "".join(f" {t}" for t in notes)
    for i, res in enumerate(results):
        if res[0] == "raised":
            mode = describe_case(cases[i], dims[i], hidden)
            if res[2]:
                said = res[1].split(":", 1)[1].strip() if ":" in res[1] else ""
                return Verdict(False, f"{name} is not implemented yet for {mode}: it raises "
                               f"NotImplementedError{f'({said!r})' if said else ''}. "
                               f"Read: {read}{note}", name, kind="not_implemented",
                               details={"error": res[1], "case": mode})
            return Verdict(False, f"{name} raised {res[1]} on {_which(i, n, cases[i], dims[i], hidden)}. "
                           f"Read: {read}{note}", name, kind="raised", details={"error": res[1]})
    views = [(as_updates(r[1], c, spec.updates_of), as_updates(s[1], c, spec.updates_of))
             for r, s, c in zip(refs, results, cases)]
    refs_v = [("ok", r) for r, _ in views]
    results_v = [("ok", s) for _, s in views]
    cands_v = [Candidate(c.name, c.explanation, c.read,
                         [("ok", as_updates(o[1], case, spec.updates_of)) if o[0] == "ok" else o
                          for o, case in zip(c.outputs, cases)]) for c in candidates]
    noise = [noise_tree(r, as_updates(z[1], c, spec.updates_of)) if z[0] == "ok" else None
             for (r, _), z, c in zip(views, refs32, cases)] if refs32 else [None] * len(cases)
    wrong = _wrong_leaves(refs_v, results_v, spec.rtol, spec.atol, noise)
    for other in accepted if wrong else ():
        other_v = [("ok", as_updates(r[1], c, spec.updates_of)) for r, c in zip(other, cases)]
        if not _wrong_leaves(other_v, results_v, spec.rtol, spec.atol, noise):
            wrong = {}
            break
    mutated = next(((i, r[2]) for i, r in enumerate(results) if r[2]), None)
    if not wrong:
        if mutated:
            i, names = mutated
            return Verdict(False, f"{name} changed its input {', '.join(names)} (on "
                           f"{_which(i, n, cases[i], dims[i], hidden)}). The caller still needs "
                           "its inputs: work on a copy (e.g. `x = x.copy()`, "
                           "`{k: v.copy() for k, v in d.items()}`) instead of modifying them "
                           f"in place.{note}", name, kind="mutated",
                           details={"inputs": names})
        return Verdict(True, f"{name}: passed ({n} {which} case{'s' if n != 1 else ''}).{note}",
                       name, details={"notes": list(notes)})
    best, rank = None, {"sure": 3, "likely": 2, "guess": 1}
    for cand in cands_v:
        level, explained = match_candidate(cand, refs_v, results_v, wrong, spec.rtol,
                                           spec.atol, noise)
        if level and (best is None or (rank[level], len(explained))
                      > (rank[best[1]], len(best[2]))):
            best = (cand, level, explained)
    first_path, where_list = next(iter(wrong.items()))
    i, m = where_list[0]
    head = (f"{name} is wrong on {_which(i, n, cases[i], dims[i], hidden)}: "
            f"{mismatch_text(m, spec.output_names, not hidden)}.")
    if mutated:
        note = f" It also changed its input {', '.join(mutated[1])}: work on a copy.{note}"
    if best:
        cand, level, explained = best
        if level == "sure":
            return Verdict(False, f"{name} is wrong. Looks like: {cand.name}. {cand.explanation} "
                           f"Read: {cand.read}{note}", name, mistake=cand.name, kind="mistake",
                           confidence="sure")
        outs = ", ".join(label(p, spec.output_names) for p in explained)
        if level == "likely":
            return Verdict(False, f"{head} Probably: {cand.name} (your wrong outputs, {outs}, "
                           f"have exactly that mistake's values). {cand.explanation} "
                           f"Read: {cand.read}{note}", name, mistake=cand.name, kind="mistake",
                           confidence="likely")
        others = ", ".join(label(p, spec.output_names) for p in wrong if p not in explained)
        return Verdict(False, f"{head} Possibly: {cand.name} ({outs} has exactly that "
                       f"mistake's values; {others} is wrong as well; a guess from the "
                       f"values). {cand.explanation} Read: {cand.read}{note}", name,
                       mistake=cand.name, kind="mistake", confidence="guess")
    guesses = []
    for path, where in wrong.items():
        common = None
        for j, mm in where:
            if "ref" not in mm:
                common = set()
                break
            t = set(leaf_transforms(mm["ref"], mm["stu"], dims[j], spec.rtol))
            common = t if common is None else common & t
        for t in sorted(common or ()):
            guesses.append(f"{label(path, spec.output_names)} {t}{_hint(t)}")
    if guesses:
        return Verdict(False, f"{head} Its numbers suggest: {'; '.join(guesses[:3])} "
                       f"(a guess from the values, not certain). Read: {read}{note}", name,
                       mistake=guesses[0], kind="wrong", confidence="guess")
    return Verdict(False, f"{head} Read: {read}{note}", name, kind="wrong",
                   details={k: v for k, v in m.items() if k not in ("path", "ref", "stu")})


def judge_record(spec: Spec, cases, dims, refs, data: bytes | None, candidates=(),
                 hidden: bool = False, accepted=(), refs32=()) -> Verdict:
    """Judge raw record bytes (None: no record was written). Fails closed."""
    name = spec.name
    which = "hidden" if hidden else "visible"
    if data is None:
        return Verdict(False, f"{name}: no result was recorded for the {which} cases (the "
                       "test cell did not run to its check, or the notebook stopped before "
                       "it): 0 points.", name, kind="no_record")
    try:
        results, notes = parse_record(data, len(cases))
    except BadRecord as exc:
        return Verdict(False, f"{name}: the recorded result is invalid ({exc}): 0 points.",
                       name, kind="bad_record")
    return judge(spec, cases, dims, refs, results, candidates, hidden, notes, accepted, refs32)


# ---------------------------------------------------------------------------- self-check
def data_path(assignment: str) -> str:
    """course_lib/data/checks/<assignment>.npz, or in ``$COURSE_CHECKS_DATA``."""
    folder = os.environ.get("COURSE_CHECKS_DATA") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "data", "checks")
    return os.path.join(folder, f"{assignment}.npz")


def write_expected(assignment: str, exercises: list[dict]) -> bytes:
    """The data file of one assignment's visible cases. ``exercises``: dicts with spec
    (Spec), cases, dims, and records (bytes of ``checks.run_cases``): refs, refs32,
    accepted (list) and candidates [(name, explanation, read, record)]."""
    entries, values = [], []

    def keep(value) -> int:
        values.append(value if isinstance(value, list) else np.frombuffer(value, np.uint8))
        return len(values) - 1

    for ex in exercises:
        spec = ex["spec"]
        entries.append({
            "spec": {"name": spec.name, "read": spec.read,
                     "output_names": list(spec.output_names), "rtol": spec.rtol,
                     "atol": spec.atol, "updates_of": [list(u) for u in spec.updates_of]},
            "dims": ex["dims"], "cases": keep(ex["cases"]), "refs": keep(ex["refs"]),
            "refs32": keep(ex["refs32"]), "accepted": [keep(r) for r in ex["accepted"]],
            "candidates": [{"name": n, "explanation": e, "read": r, "record": keep(rec)}
                           for n, e, r, rec in ex["candidates"]]})
    described, arrays = checks.encode_values(values)
    return checks.encode({"version": checks.FORMAT_VERSION, "assignment": assignment,
                          "exercises": entries, "values": described}, arrays)


def self_check(assignment: str, name: str, fn, notes=()) -> Verdict:
    """Student mode of ``check``: judge ``fn`` on the visible cases right here."""
    path = data_path(assignment)
    if not os.path.isfile(path):
        raise AssertionError(f"no self-check data for assignment {assignment!r} ({path}): "
                             "reinstall the course library (see the book's Exercises page)")
    with open(path, "rb") as fh:
        meta, arrays = checks.decode(fh.read())
    values = checks.decode_values(meta["values"], arrays)
    entry = next((e for e in meta["exercises"] if e["spec"]["name"] == name), None)
    if entry is None:
        raise AssertionError(f"assignment {assignment!r} has no exercise {name!r}")
    s = entry["spec"]
    spec = Spec(s["name"], s["read"], tuple(s["output_names"]), s["rtol"], s["atol"],
                tuple(tuple(u) for u in s["updates_of"]))
    cases = values[entry["cases"]]

    def record(i):
        return parse_record(values[i].tobytes(), len(cases))[0]

    cands = [Candidate(c["name"], c["explanation"], c["read"], record(c["record"]))
             for c in entry["candidates"]]
    return judge_record(spec, cases, entry["dims"], record(entry["refs"]),
                        checks.run_cases(fn, cases, notes), cands, False,
                        [record(i) for i in entry["accepted"]], record(entry["refs32"]))
