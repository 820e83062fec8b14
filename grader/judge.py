"""The grader's side of the judge: expected outputs computed from the registry.

The comparison, the tolerance model and the diagnosis live in ``course_lib.judging``
(one judge for the notebook, ``python -m grader check`` and the grader; read its
docstring for the tolerance model). Here the registry's reference and its catalogued
mistakes (whole wrong implementations) run on the judged cases in the grader's own
process, through the same record path as the student's function, and hidden cases are
drawn per student.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import tempfile
from pathlib import Path

import numpy as np

from course_lib import checks, judging
from course_lib.judging import BadRecord, Verdict, outputs_of, parse_record  # noqa: F401

from . import registry


def spec_of(exercise) -> judging.Spec:
    return judging.Spec(exercise.name, str(exercise.section),
                        tuple(getattr(exercise, "output_names", ()) or ()),
                        float(exercise.rtol), float(exercise.atol),
                        tuple(getattr(exercise, "updates_of", ()) or ()))


def dims_of(exercise, cases: list[dict]) -> list[dict]:
    """Named sizes of each case (B, T, ...) for messages and the diagnosis."""
    dims = getattr(exercise, "dims", None)
    return [dict(dims(c)) if dims else {} for c in cases]


def references(exercise, cases: list[dict]) -> list:
    return references_of(exercise.reference, exercise, cases)


def references_of(fn, exercise, cases: list[dict]) -> list:
    refs = outputs_of(fn, cases)
    for i, ref in enumerate(refs):
        if ref[0] != "ok":
            raise RuntimeError(f"reference of {exercise.name} failed on case {i + 1}: {ref[1]}")
    return refs


def float32_references(exercise, cases: list[dict]) -> list:
    """A correct implementation run on float32 copies of the inputs: how far float32
    arithmetic moves each output on these cases (part of the tolerance). The
    exercise's ``probe`` (plain NumPy that keeps the dtype), else its reference."""
    probe = getattr(exercise, "probe", None) or exercise.reference
    return outputs_of(judging.in_float32(probe), cases)


def candidates(exercise, cases: list[dict]) -> list[judging.Candidate]:
    """The catalogued mistakes' outputs on ``cases`` (a broken entry is skipped)."""
    out = []
    for m in getattr(exercise, "mistakes", ()) or ():
        try:
            outs = outputs_of(m.fn, cases)
        except Exception:  # noqa: BLE001 - a broken catalogue entry is not the student's fault
            continue
        out.append(judging.Candidate(m.name, m.explanation, str(m.section), outs))
    return out


_last_expected: list = [None, None, None]  # exercise, cases, what expected() computed


def expected(exercise, cases: list[dict]) -> dict:
    """Everything the judge compares with on ``cases``: reference outputs, float32
    probe outputs, other accepted designs, catalogued mistakes. Judging many functions
    on the same case list (a class, the tests) computes it once."""
    if _last_expected[0] is exercise and _last_expected[1] is cases:
        return _last_expected[2]
    out = {"refs": references(exercise, cases), "refs32": float32_references(exercise, cases),
           "accepted": [references_of(fn, exercise, cases)
                        for fn in getattr(exercise, "accepted", ())],
           "candidates": candidates(exercise, cases)}
    _last_expected[:] = [exercise, cases, out]
    return out


def judge_record(exercise, cases: list[dict], data: bytes | None, hidden: bool = False) -> Verdict:
    """Judge raw record bytes of ``exercise`` on ``cases`` (None: nothing recorded)."""
    e = expected(exercise, cases)
    return judging.judge_record(spec_of(exercise), cases, dims_of(exercise, cases), e["refs"],
                                data, e["candidates"], hidden, e["accepted"], e["refs32"])


def judge_fn(exercise, cases: list[dict], fn, hidden: bool = False) -> Verdict:
    """Judge a function directly (registry-level tests, no kernel)."""
    return judge_record(exercise, cases, checks.run_cases(fn, cases), hidden)


def expected_data(assignment: str) -> bytes:
    """The self-check data file of ``assignment`` (course_lib/data/checks/<a>.npz):
    visible cases, expected outputs, float32 probe outputs and the catalogued mistakes'
    outputs, so the notebook judges without the grader package."""
    entries = []
    for name, ex in sorted(registry.for_assignment(assignment).items()):
        cases = cases_for(ex, False)
        entries.append({
            "spec": spec_of(ex), "cases": cases, "dims": dims_of(ex, cases),
            "refs": checks.run_cases(ex.reference, cases),
            "refs32": checks.run_cases(judging.in_float32(
                getattr(ex, "probe", None) or ex.reference), cases),
            "accepted": [checks.run_cases(fn, cases) for fn in getattr(ex, "accepted", ())],
            "candidates": [(m.name, m.explanation, str(m.section), checks.run_cases(m.fn, cases))
                           for m in getattr(ex, "mistakes", ()) or ()]})
    return judging.write_expected(assignment, entries)


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
    """The visible cases, or a student's hidden ones; each dict in the order of the
    reference's parameters (the harness calls positionally). A case gives the leading
    parameters; the ones it leaves out must have defaults."""
    drawn = (exercise.visible_cases() if not hidden
             else exercise.hidden_cases(np.random.default_rng(seed)))
    params = list(inspect.signature(exercise.reference).parameters.values())
    cases = []
    for case in drawn:
        leading = [p.name for p in params[:len(case)]]
        if set(case) != set(leading) or any(
                p.default is inspect.Parameter.empty for p in params[len(case):]
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)):
            raise ValueError(f"a case of {exercise.name} has inputs {sorted(case)}; its "
                             f"reference takes {[p.name for p in params]}")
        cases.append({k: case[k] for k in leading})
    return cases
