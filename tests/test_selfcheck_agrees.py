"""One judge: `python -m grader check` gives the grade's visible verdict.

A temporary course gets one submission per catalogued mistake of every assignment,
plus notebooks with a SyntaxError in an answer cell, an edited locked test cell, a
scratch cell that calls the harness with a wrong variant, and a student's own `check`.
The class is graded with the real pipeline (`python -m grader grade`, no sandbox, to
keep the run short); each notebook is also self-checked (`grader.selfcheck.run`). For
every test cell that the grade failed on its visible cases, the self-check prints the
same message; where the grade passed (or failed on hidden cases only), the self-check
passes."""
from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys

import nbformat
import pytest
from helpers import REPO, grader_env

from grader import exercises as reg
from grader import selfcheck, synthetic
from grader.nbapi import ASSIGNMENT_IDS as ASSIGNMENTS



def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40]


def _special(solved):
    """(student, notebook) pairs of the 03_bptt special cases."""
    syntax = synthetic.with_cell_replaced(
        solved, "rnn_bptt", reg.strip_markers(reg.MODULES["03_bptt"].SOLUTIONS["rnn_bptt"])
        .replace("T, B, _ = xs.shape", "T, B, _ = xs.shape)"))
    edited = nbformat.from_dict(json.loads(nbformat.writes(solved)))
    for cell in edited.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "test_rnn_bptt":
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
    root = tmp_path_factory.mktemp("course")
    shutil.copy(REPO / "nbgrader_config.py", root)
    env = grader_env()  # the course's own registry
    for a in ASSIGNMENTS:
        shutil.copytree(REPO / "solutions" / a, root / "solutions" / a)
    subprocess.run([sys.executable, "-m", "grader", "release", "--root", str(root)],
                   cwd=REPO, env=env, check=True, capture_output=True)
    notebooks = {}
    for a in ASSIGNMENTS:
        solved = synthetic.solved(root / "solutions" / a / f"{a}.ipynb",
                                  root / "exercises" / a / f"{a}.ipynb")
        subs = [(f"m-{_safe(fn)}-{_safe(m)}",
                 synthetic.with_cell_replaced(solved, fn, source))
                for (aa, fn, m), source in reg.MISTAKE_SOURCES.items() if aa == a]
        if a == "03_bptt":
            subs += _special(solved)
        for student, nb in subs:
            notebooks[(student, a)] = synthetic.write_submission(root, student, a, nb)
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", "--root", str(root), "-q",
                           "--no-sandbox"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=3000)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root, notebooks


def _graded(root, student, assignment) -> dict:
    data = json.loads((root / "grader" / "verdicts" / student / f"{assignment}.json").read_text())
    return {t["name"]: t for t in data["tests"]}


def _checked(path) -> dict:
    out = io.StringIO()
    selfcheck.run(path, out=out)
    lines = {}
    for line in out.getvalue().splitlines():
        m = re.match(r"\s+(PASS|FAIL)\s+(\w+) \([^)]*\)(?:: (.*))?$", line)
        if m:
            lines[m.group(2)] = (m.group(1), m.group(3) or "")
    return lines


def test_self_check_equals_the_grades_visible_verdict(course):
    root, notebooks = course
    compared = 0
    for (student, a), path in sorted(notebooks.items()):
        graded, checked = _graded(root, student, a), _checked(path)
        for name, g in graded.items():
            status, message = checked[name]
            if g["passed"] or "a hidden case" in g["message"]:
                assert status == "PASS", f"{student}/{name}: {message}"
            else:
                assert (status, message) == ("FAIL", g["message"]), f"{student}/{name}"
            compared += 1
    print(f"\n{compared} test cells of {len(notebooks)} notebooks agree")


def test_the_special_notebooks_get_what_they_deserve(course):
    root, _ = course
    syntax = _graded(root, "syntax", "03_bptt")["rnn_bptt"]
    assert not syntax["passed"] and "SyntaxError" in syntax["message"] and "line" in syntax["message"]
    assert _graded(root, "edited-test", "03_bptt")["rnn_bptt"]["passed"]
    assert _graded(root, "scratch", "03_bptt")["rnn_bptt"]["passed"]
    own = _graded(root, "own-check", "03_bptt")
    assert all(t["passed"] for t in own.values())
    assert "defines its own `check`" not in own["rnn_step_backward"]["message"]
