"""One judge: `python -m grader check` gives the grade's visible verdict.

For every test cell that the grade failed on its visible cases, the self-check prints
the same message; where the grade passed (or failed on hidden cases only), the
self-check passes. Shown two ways:

* End to end, with real kernels, one notebook of each kind for chapter 3's assignment:
  the solution, the unmodified notebook, a catalogued mistake, and the four notebooks
  where the self-check and the grader take different roads (a SyntaxError in an answer
  cell, an edited locked test cell, a scratch cell that calls the harness with a wrong
  variant, a student's own `check`). They are graded with the real pipeline
  (`python -m grader grade`, no sandbox, to keep the run short) and each one is
  self-checked (`grader.selfcheck.run`, a fresh kernel per notebook).
* Without a kernel, every catalogued mistake of every assignment, and each solution and
  unmodified notebook: the grader's own steps (``PrepareCases``, then ``Verdict`` on the
  records; the hidden cases drawn from the student's seed) and the self-check's
  (``selfcheck.run``, visible cases) judge the same notebook, its cells run in this
  process instead of a kernel (``run_here``)."""
from __future__ import annotations

import copy
import io
import json
import re
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import nbformat
import pytest
from helpers import REPO, grader_env

from grader import exercises as reg
from grader import selfcheck, synthetic
from grader.nbapi import ASSIGNMENT_IDS as ASSIGNMENTS
from grader.verdict import PrepareCases, Verdict

SALT = "test-salt-" + "0" * 32  # any salt: the hidden cases differ from the visible ones


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40]


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _solved(assignment: str):
    return synthetic.solved(REPO / "solutions" / assignment / f"{assignment}.ipynb",
                            REPO / "exercises" / assignment / f"{assignment}.ipynb")


def _kinds(assignment: str, solved) -> list:
    """(student, notebook): the solution, the unmodified notebook, each catalogued mistake."""
    blank = nbformat.read(REPO / "exercises" / assignment / f"{assignment}.ipynb", as_version=4)
    return [("solution", solved), ("unmodified", blank)] + [
        (f"m-{_safe(fn)}-{_safe(m)}", synthetic.with_cell_replaced(solved, fn, source))
        for (a, fn, m), source in reg.MISTAKE_SOURCES.items() if a == assignment]


def _special(solved):
    """(student, notebook) pairs of the 03_bptt special cases."""
    syntax = synthetic.with_cell_replaced(
        solved, "rnn_bptt", reg.strip_markers(reg.MODULES["03_bptt"].SOLUTIONS["rnn_bptt"])
        .replace("T, B, _ = xs.shape", "T, B, _ = xs.shape)"))
    edited = nbformat.from_dict(json.loads(nbformat.writes(solved)))
    for cell in edited.cells:
        if _nbgrader(cell).get("grade_id") == "test_rnn_bptt":
            cell.source = "print('rnn_bptt: passed')"
    scratch = nbformat.from_dict(json.loads(nbformat.writes(solved)))
    scratch.cells.append(nbformat.v4.new_code_cell(
        "from course_lib.checks import check\n\n"
        "def faster(params, xs, targets, h0, mode):\n    return 0.0, {}\n\n"
        "try:\n    check('03_bptt', 'rnn_bptt', faster)\nexcept AssertionError as e:\n"
        "    print('my variant:', str(e)[:80])\n"))
    shadow = synthetic.with_cell_replaced(
        solved, "relu_rnn_example",
        reg.strip_markers(reg.MODULES["03_bptt"].SOLUTIONS["relu_rnn_example"])
        + "\n\ndef check(f, x, eps=1e-6):\n    \"\"\"my finite-difference checker\"\"\"\n"
        "    return (f(x + eps) - f(x - eps)) / (2 * eps)\n")
    return [("syntax", syntax), ("edited-test", edited), ("scratch", scratch),
            ("own-check", shadow)]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """Chapter 3's end-to-end notebooks, graded by `python -m grader grade`."""
    a = "03_bptt"
    root = tmp_path_factory.mktemp("course")
    shutil.copy(REPO / "nbgrader_config.py", root)
    env = grader_env()  # the course's own registry
    shutil.copytree(REPO / "solutions" / a, root / "solutions" / a)
    subprocess.run([sys.executable, "-m", "grader", "release", "--root", str(root)],
                   cwd=REPO, env=env, check=True, capture_output=True)
    solved = _solved(a)
    notebooks = {}
    for student, nb in _kinds(a, solved)[:3] + _special(solved):
        notebooks[(student, a)] = synthetic.write_submission(root, student, a, nb)
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", "--root", str(root), "-q",
                           "--no-sandbox"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root, notebooks


def _graded(verdicts: Path, student, assignment) -> dict:
    data = json.loads((verdicts / student / f"{assignment}.json").read_text())
    return {t["name"]: t for t in data["tests"]}


def _checked(path, execute=selfcheck.run_in_kernel) -> dict:
    out = io.StringIO()
    selfcheck.run(path, out=out, execute=execute)
    lines = {}
    for line in out.getvalue().splitlines():
        m = re.match(r"\s+(PASS|FAIL)\s+(\w+) \([^)]*\)(?:: (.*))?$", line)
        if m:
            lines[m.group(2)] = (m.group(1), m.group(3) or "")
    return lines


def _agree(graded: dict, checked: dict, who: str) -> int:
    """Assert the self-check's lines give the grade's visible verdicts; the tests compared."""
    for name, g in graded.items():
        status, message = checked[name]
        if g["passed"] or "a hidden case" in g["message"]:
            assert status == "PASS", f"{who}/{name}: {message}"
        else:
            assert (status, message) == ("FAIL", g["message"]), f"{who}/{name}"
    return len(graded)


def test_self_check_equals_the_grades_visible_verdict(course):
    root, notebooks = course
    compared = sum(_agree(_graded(root / "grader" / "verdicts", student, a), _checked(path),
                          student) for (student, a), path in sorted(notebooks.items()))
    print(f"\n{compared} test cells of {len(notebooks)} notebooks agree")


def test_the_special_notebooks_get_what_they_deserve(course):
    verdicts = course[0] / "grader" / "verdicts"
    syntax = _graded(verdicts, "syntax", "03_bptt")["rnn_bptt"]
    assert not syntax["passed"] and "SyntaxError" in syntax["message"] and "line" in syntax["message"]
    assert _graded(verdicts, "edited-test", "03_bptt")["rnn_bptt"]["passed"]
    assert _graded(verdicts, "scratch", "03_bptt")["rnn_bptt"]["passed"]
    own = _graded(verdicts, "own-check", "03_bptt")
    assert all(t["passed"] for t in own.values())
    assert "defines its own `check`" not in own["rnn_step_backward"]["message"]


# --------------------------------------------------------------------------- no kernel

def run_here(nb, folder=None, timeout=None) -> None:
    """The kernel's stand-in: every code cell run in order in one namespace of this
    process; a cell that raises gets the error output a kernel gives it, and the next
    cells still run."""
    namespace: dict = {"__name__": "__main__"}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell.outputs = []
        try:
            exec(compile(cell.source, f"<cell {index}>", "exec"), namespace)  # noqa: S102
        except Exception as exc:  # noqa: BLE001 - what a kernel reports, the cell records
            cell.outputs = [nbformat.v4.new_output(
                "error", ename=type(exc).__name__, evalue=str(exc),
                traceback=traceback.format_exception(exc))]


def _as_graded(nb, source):
    """``nb`` with its locked cells as the grader restores them: the instructor's
    source, hidden tests included."""
    locked = {_nbgrader(c).get("grade_id"): c.source for c in source.cells
              if _nbgrader(c).get("locked")}
    out = copy.deepcopy(nb)
    for cell in out.cells:
        if _nbgrader(cell).get("grade_id") in locked:
            cell.source = locked[_nbgrader(cell).get("grade_id")]
    return out


def _graded_here(nb, assignment: str, student: str, verdicts: Path) -> dict:
    """The grader's verdicts: its own steps around ``run_here`` instead of a kernel."""
    resources = {"nbgrader": {"assignment": assignment, "student": student,
                              "notebook": assignment}}
    nb, resources = PrepareCases(salt=SALT).preprocess(nb, resources)
    run_here(nb)
    Verdict(verdict_directory=str(verdicts)).preprocess(nb, resources)
    return _graded(verdicts, student, assignment)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_catalogued_mistake_gets_the_same_verdict_without_a_kernel(assignment, tmp_path):
    solved = _solved(assignment)
    source = nbformat.read(REPO / "solutions" / assignment / f"{assignment}.ipynb",
                           as_version=4)
    compared = failed = 0
    for student, nb in _kinds(assignment, solved):
        path = synthetic.write_submission(tmp_path, student, assignment, nb)
        graded = _graded_here(_as_graded(nb, source), assignment, student, tmp_path / "v")
        compared += _agree(graded, _checked(path, execute=run_here), student)
        failed += sum(not g["passed"] for g in graded.values())
        if student == "solution":
            assert all(g["passed"] for g in graded.values()), graded
        elif student == "unmodified":
            assert not any(g["passed"] for g in graded.values()), graded
        else:  # a catalogued mistake fails its own function, naming the mistake
            assert any(not g["passed"] and "Looks like:" in g["message"]
                       for g in graded.values()), (student, graded)
    print(f"\n{assignment}: {compared} test cells agree, {failed} of them failed")
