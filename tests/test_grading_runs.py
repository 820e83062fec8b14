"""What a `python -m grader grade` run does besides grading, on one-notebook courses:

* a worker killed in the middle of a notebook is replaced and the notebook graded;
* a rerun grades again when the grader's code, the exercise registry, the nbgrader
  configuration or the hidden-cases salt changes, and only then (the run uses its own
  copy of the grader and of the demo registry, so that the test can edit them);
* a run with the course's own registry (COURSE_EXERCISES_MODULE unset) grades a real
  assignment.
"""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers import DEMO, REPO, grader_env, read_grades, run_grade

from grader import judge, synthetic

A = "00_demo"


def _course(root: Path, solutions: Path, assignment: str, env: dict, cwd: Path) -> Path:
    """A course at ``root`` with ``assignment`` released and solved by student ada."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copytree(solutions / assignment, root / "solutions" / assignment)
    subprocess.run([sys.executable, "-m", "grader", "release", "--root", str(root)],
                   cwd=cwd, env=env, check=True, capture_output=True)
    solved = synthetic.solved(root / "solutions" / assignment / f"{assignment}.ipynb",
                              root / "exercises" / assignment / f"{assignment}.ipynb")
    synthetic.write_submission(root, "ada", assignment, solved)
    return root


def _graded_count(proc: subprocess.CompletedProcess) -> int:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = re.search(r"graded (\d+), not gradable (\d+)", proc.stdout)
    assert counts, proc.stdout
    return int(counts[1]) + int(counts[2])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(root, code, env, first run): a one-student demo course graded by a copy of the
    grader (in ``code``) whose worker is killed once while it grades the notebook."""
    top = tmp_path_factory.mktemp("runs")
    code = top / "code"
    for part in ("grader", "course_lib"):
        shutil.copytree(REPO / part, code / part,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (code / "demo").mkdir()
    shutil.copy(DEMO / "demo_registry.py", code / "demo")
    env = grader_env(code / "demo", code, registry="demo_registry")
    root = _course(top / "course", DEMO / "solutions", A, env, code)
    proc = subprocess.Popen([sys.executable, "-m", "grader", "grade", "--root", str(root),
                             "-q", "-j", "1"], cwd=code, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    grader = psutil.Process(proc.pid)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        for worker in grader.children():
            try:  # a pool worker (a child of the grader) whose notebook's sandbox runs
                if any("COURSE_RECORD_DIR" in " ".join(kid.cmdline())
                       for kid in worker.children()):
                    worker.send_signal(signal.SIGKILL)
                    killed = worker
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.02)
    out, err = proc.communicate(timeout=600)
    return root, code, env, killed, subprocess.CompletedProcess(proc.args, proc.returncode,
                                                                out, err)


def test_a_worker_killed_mid_notebook_is_replaced(demo):
    root, _, _, killed, first = demo
    assert killed is not None, "no worker was caught grading: " + first.stdout + first.stderr
    killed.wait(timeout=30)  # not our child: psutil cannot tell its exit status
    assert not killed.is_running()
    assert _graded_count(first) == 1
    row = read_grades(root)[("ada", A)]
    assert row["status"] == "graded" and float(row["auto_score"]) == 3, row
    assert "crashed" not in row["note"], row["note"]


def test_a_rerun_grades_again_only_when_what_decides_a_grade_changes(demo):
    """Each change regrades the notebook, and a rerun after the last grades nothing
    (test_grading_pipeline.py shows the same for a whole class)."""
    root, code, env, _, _ = demo

    def rerun(env=env) -> int:
        return _graded_count(run_grade(root, env=env, cwd=code))

    for what in (code / "grader" / "judge.py", code / "demo" / "demo_registry.py",
                 root / "nbgrader_config.py"):
        with open(what, "a") as fh:
            fh.write("\n# an edit\n")
        assert rerun() == 1, f"{what.name} changed"
    (root / judge.SALT_FILE).write_text("another-salt-" + "1" * 32 + "\n")
    assert rerun() == 1, "the salt changed"
    longer = {**env, "COURSE_CELL_TIMEOUT": "31", "COURSE_NOTEBOOK_TIMEOUT": "301"}
    assert rerun(longer) == 1, "the time limits changed"
    assert rerun(longer) == 0, "nothing changed since"
    assert float(read_grades(root)[("ada", A)]["auto_score"]) == 3


def test_the_course_registry_is_the_default(tmp_path):
    """No COURSE_EXERCISES_MODULE: the course's own exercises grade a real assignment."""
    from grader import exercises

    assignment = "02_softmax"
    env = grader_env()
    root = _course(tmp_path, REPO / "solutions", assignment, env, REPO)
    assert _graded_count(run_grade(root, env=env)) == 1
    full = sum(ex.points for (a, _), ex in exercises.EXERCISES.items() if a == assignment)
    row = read_grades(root)[("ada", assignment)]
    assert row["status"] == "graded" and float(row["auto_score"]) == full, row
