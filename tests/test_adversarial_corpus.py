"""The adversarial corpus graded as a class through the real `python -m grader grade`
(what `make grade` runs), sandbox on, together with honest students.

For every submission of tests/fixtures/adversarial/corpus.py: the autograded score it
deserves (0 for the functions it attacks with, full for its honest rest), a clear line
in its feedback; for the whole run: the course tree (and the repository's code) hashed
before and after is unchanged apart from the grader's own output folders, no
connection reached a listening socket, the gradebook passes SQLite's integrity check,
and a grader killed (SIGKILL) mid-run then re-run ends with exactly those grades.
Cell timeout 5 s (COURSE_CELL_TIMEOUT) to keep the run short.
"""
from __future__ import annotations

import csv
import hashlib
import html
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from grader import sandbox

REPO = Path(__file__).resolve().parent.parent
ADV = REPO / "tests" / "fixtures" / "adversarial"
A = "90_adv"

pytestmark = pytest.mark.skipif(not sandbox.available(),
                                reason="needs root, bubblewrap and setpriv")

ENV = {
    **os.environ,
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    "PYTHONPATH": os.pathsep.join([str(ADV), str(REPO)]),
    "COURSE_EXERCISES_MODULE": "adv_registry",
    "COURSE_CELL_TIMEOUT": "5",
    "COURSE_NOTEBOOK_TIMEOUT": "60",
}
# the grader's own output: everything else in the course root must be unchanged
OUTPUT = {"grader/autograded", "grader/feedback", "grader/verdicts", "grader/report",
          "grader/gradebook.db", "grader/gradebook.db-journal", "grader/grades.csv",
          "grader/grades.tmp", "grader/grading_state.json", "grader/grading_state.tmp",
          "grader/downloaded"}

OUTPUT |= {"grader/similarity.json", "grader/similarity.tmp",  # the grader's flags,
           "grader/intake.json", "grader/intake.tmp", "grader/export"}  # LMS in and out


def tree_digest(root: Path, skip=()) -> dict[str, str]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", ".pytest_cache")
                         and os.path.normpath(os.path.join(rel_dir, d)) not in skip)
        for f in sorted(files):
            rel = os.path.normpath(os.path.join(rel_dir, f))
            if rel in skip or f.endswith(".pyc"):
                continue
            p = Path(dirpath, f)
            st = p.lstat()
            data = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
            out[rel] = hashlib.sha256(data).hexdigest() + f":{st.st_mode:o}:{st.st_uid}"
        for d in dirs:
            out[os.path.normpath(os.path.join(rel_dir, d)) + "/"] = "dir"
    return out


def run_grade(root: Path, extra=(), **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "grader", "grade", "--root", str(root), "-q",
                             "-j", "2", *extra], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def finished(root: Path) -> int:
    try:
        state = json.loads((root / "grader" / "grading_state.json").read_text())
    except (OSError, ValueError):
        return 0
    return len(state.get("submissions", {}))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    sys.path.insert(0, str(ADV))
    try:
        import build_source
        import corpus
    finally:
        sys.path.remove(str(ADV))
    from grader import synthetic

    root = tmp_path_factory.mktemp("advcourse")
    (root / "nbgrader_config.py").write_text((REPO / "nbgrader_config.py").read_text())
    build_source.write(root)
    subprocess.run([sys.executable, "-m", "grader", "release", "--root", str(root)],
                   cwd=REPO, env=ENV, check=True, capture_output=True)
    solved = synthetic.solved(root / "solutions" / A / f"{A}.ipynb",
                              root / "exercises" / A / f"{A}.ipynb")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.5)
    connections: list = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connections.append(srv.accept()[1])
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    cases = corpus.build(root, solved, srv.getsockname()[1], REPO)

    before = tree_digest(root, OUTPUT)
    t0 = time.monotonic()
    # 1) a run killed mid-way (SIGKILL to the whole process group)
    proc = run_grade(root)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and finished(root) < 8 and proc.poll() is None:
        time.sleep(0.5)
    killed_after = finished(root)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    t_killed = time.monotonic() - t0
    # 2) the re-run finishes the class
    proc = run_grade(root)
    out, err = proc.communicate(timeout=900)
    t_total = time.monotonic() - t0
    stop.set()
    print(f"\nadversarial corpus: {len(cases)} submissions; killed after {killed_after} "
          f"finished ({t_killed:.0f} s); total {t_total:.0f} s")
    assert proc.returncode == 0, out + err
    return {"root": root, "cases": cases, "before": before,
            "connections": connections, "stdout": out, "killed_after": killed_after}


def grades(root: Path) -> dict:
    with open(root / "grader" / "grades.csv") as fh:
        return {r["student"]: r for r in csv.DictReader(fh) if r["assignment"] == A}


def feedback_text(root: Path, student: str) -> str:
    page = (root / "grader" / "feedback" / student / A / f"{A}.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_each_submission_gets_the_score_it_deserves(graded):
    g = grades(graded["root"])
    wrong = {s: (g.get(s, {}).get("auto_score"), c.score) for s, c in graded["cases"].items()
             if s not in g or float(g[s]["auto_score"] or 0) != c.score}
    assert not wrong, f"student: (got, expected) {wrong}"
    # nobody's maximum grew (changed points / grade ids / answer cells made tests)
    maxes = {s: r["auto_max_score"] for s, r in g.items() if r["status"] == "graded"}
    assert set(maxes.values()) == {"5"}, maxes


def test_each_feedback_has_a_clear_line(graded):
    root = graded["root"]
    missing = {}
    for s, c in graded["cases"].items():
        text = feedback_text(root, s)
        if c.feedback not in text:
            missing[s] = (c.feedback, text[:400])
        assert "hidden=True" not in text
    assert not missing, missing


def test_nothing_outside_the_scratch_dirs_changed(graded):
    root = graded["root"]
    after = tree_digest(root, OUTPUT)
    changed = {k for k in set(after) | set(graded["before"])
               if after.get(k) != graded["before"].get(k)}
    assert not changed, sorted(changed)[:20]
    # the repository's own code (other people edit it while tests run: look for the
    # corpus's marks rather than hashing it)
    assert not (REPO / "grader" / "pwned.py").exists()
    for f in list((REPO / "course_lib").rglob("*.py")) + list((REPO / "grader").rglob("*.py")):
        assert b"PWNED" not in f.read_bytes(), f
    assert not graded["connections"]
    assert not list((root / "grader").glob("pwned*"))


def test_gradebook_integrity(graded):
    with sqlite3.connect(graded["root"] / "grader" / "gradebook.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_autograded_notebooks_stay_small(graded):
    root = graded["root"]
    for s in ("huge-output-lines", "huge-output-nonewline"):
        nb = root / "grader" / "autograded" / s / A / f"{A}.ipynb"
        assert nb.stat().st_size < 1_000_000, (s, nb.stat().st_size)


def test_a_full_regrade_gives_the_same_grades(graded):
    """The killed-then-resumed run above and an uninterrupted one agree."""
    root = graded["root"]
    before = (root / "grader" / "grades.csv").read_text()
    proc = run_grade(root, extra=["--force"])
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "graded 26, not gradable 4," in out, out
    assert (root / "grader" / "grades.csv").read_text() == before
