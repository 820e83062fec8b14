"""End to end: the real nbgrader pipeline (`python -m grader grade`) on a synthetic class.

One grade run covers every fixture at once (parallel workers, sandbox on when
bubblewrap is available): the demo assignment of tests/fixtures/grading_demo and,
when they exist, the course's assignments (solutions/ + grader/exercises):

* each solution submitted as-is -> full autograded marks;
* the unmodified student notebook and one catalogued mistake (MISTAKE_SOURCES), of
  the demo and of the first course assignment: zero, and the run does not crash;
  exactly that function's points lost, and its feedback names the mistake (every
  mistake of every assignment is judged without a kernel in test_grading_judge.py,
  test_fairness.py and test_selfcheck_agrees.py, on the same code path);
* a few broken submissions (corrupt JSON, empty folder, cheats) -> zero for what they
  break, clear notes, the rest of the class graded.

Then a second run grades nothing and writes identical grades; changing one
submission regrades only that one.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from helpers import DEMO
from helpers import DEMO_ENV as ENV
from helpers import REPO, feedback_page, hidden_calls, page_text, run_grade
from helpers import demo_registry as _registry
from helpers import read_grades as _grades

FIXTURES = REPO / "tests" / "fixtures" / "submissions"


def _assignments() -> list[str]:
    from grader import nbapi

    reg = _registry()
    real = [a for a in nbapi.source_assignments(REPO)
            if any(k[0] == a for k in reg.EXERCISES)]
    return ["00_demo"] + real


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40]


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    from grader import synthetic

    reg = _registry()
    root = tmp_path_factory.mktemp("course")
    shutil.copy(REPO / "nbgrader_config.py", root)
    assignments = _assignments()
    for a in assignments:
        src = (DEMO if a == "00_demo" else REPO) / "solutions" / a
        shutil.copytree(src, root / "solutions" / a)
    subprocess.run([sys.executable, "-m", "grader", "release", "--root", str(root)],
                   cwd=REPO, env=ENV, check=True, capture_output=True)
    expected = {}  # (student, assignment) -> (auto score, mistake name or None)
    full = {a: sum(ex.points for (aa, _), ex in reg.EXERCISES.items() if aa == a)
            for a in assignments}
    for a in assignments:
        sol = root / "solutions" / a / f"{a}.ipynb"
        ex = root / "exercises" / a / f"{a}.ipynb"
        solved = synthetic.solved(sol, ex)
        synthetic.write_submission(root, "solution", a, solved)
        expected[("solution", a)] = (full[a], None)
        if a not in assignments[:2]:
            continue  # the demo's and one course notebook: one of a kind is enough
        synthetic.write_submission(root, "unmodified", a, nbformat.read(ex, as_version=4))
        expected[("unmodified", a)] = (0, None)
        # one catalogued mistake end to end; every other one is judged without a kernel
        # (test_grading_judge, test_fairness, test_selfcheck_agrees)
        for key, source in [(k, s) for k, s in reg.MISTAKE_SOURCES.items() if k[0] == a][:1]:
            fn = synthetic.mistake_fn_name(key, source)
            mistake = key[-1]
            student = f"m-{a[:2]}-{_safe(fn)}-{_safe(mistake)}"
            synthetic.write_submission(root, student, a,
                                       synthetic.with_cell_replaced(solved, fn, source))
            expected[(student, a)] = (full[a] - reg.EXERCISES[(a, fn)].points, mistake)
    # broken and dishonest submissions of the demo assignment
    demo_solved = synthetic.solved(root / "solutions/00_demo/00_demo.ipynb",
                                   root / "exercises/00_demo/00_demo.ipynb")
    corrupt = root / "grader/submitted/corrupt/00_demo"
    corrupt.mkdir(parents=True)
    (corrupt / "00_demo.ipynb").write_text('{"cells": [')
    expected[("corrupt", "00_demo")] = (0, None)
    (root / "grader/submitted/empty/00_demo").mkdir(parents=True)
    expected[("empty", "00_demo")] = (0, None)
    cheat = synthetic.with_cell_replaced(
        demo_solved, "affine",
        "import numpy as np\n"
        "np.allclose = lambda *a, **k: True\n"
        "def check(assignment, name, fn, hidden=False):\n"
        "    print(name + ': passed')\n"
        "def affine(x, w, b):\n    return 0 * x\n")
    synthetic.write_submission(root, "cheat-check", "00_demo", cheat)
    expected[("cheat-check", "00_demo")] = (full["00_demo"] - 2 - 1, None)  # both tests patched
    eq_obj = synthetic.with_cell_replaced(
        demo_solved, "affine",
        "class Anything:\n    def __eq__(self, other):\n        return True\n"
        "    def __array__(self, *a, **k):\n        raise TypeError('no')\n"
        "def affine(x, w, b):\n    return Anything()\n")
    synthetic.write_submission(root, "eq-true", "00_demo", eq_obj)
    expected[("eq-true", "00_demo")] = (full["00_demo"] - 2, None)

    proc = run_grade(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root, expected, proc


def _feedback_text(root: Path, student: str, assignment: str) -> str:
    return page_text(feedback_page(root, student, assignment))


def test_every_submission_gets_its_expected_score(graded_class):
    root, expected, _ = graded_class
    grades = _grades(root)
    wrong = {k: (grades.get(k, {}).get("auto_score"), v[0]) for k, v in expected.items()
             if k not in grades or float(grades[k]["auto_score"]) != v[0]}
    assert not wrong, f"(student, assignment): (got, expected) {wrong}"


def most_at_once(state: dict) -> int:
    """The most submissions that were being graded at one time, from the [start, end]
    spans the workers recorded in a run state."""
    events = sorted((t, +1 if i == 0 else -1) for entry in state["submissions"].values()
                    for i, t in enumerate(entry["ran"]))  # at equal times an end comes first
    running, most = 0, 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def test_workers_grade_at_the_same_time(graded_class):
    """The class was graded by several workers at once, at most as many at a time as
    there are workers."""
    from grader import pipeline

    root, _, _ = graded_class
    state = json.loads((root / "grader" / pipeline.STATE_FILE).read_text())
    assert 2 <= most_at_once(state) <= pipeline.default_workers(), most_at_once(state)


def test_feedback_names_each_mistake_and_hides_hidden_tests(graded_class):
    root, expected, _ = graded_class
    checked = 0
    for (student, a), (_, mistake) in expected.items():
        text = _feedback_text(root, student, a)
        if (root / "grader" / "autograded" / student / a).is_dir():
            # positive control: the hidden calls exist, and their visible twins (same
            # tokens minus the flag) are found in the page, so a leak would be found too
            hidden = hidden_calls(root, student, a)
            assert hidden, f"{student}/{a}: the autograded notebook has no hidden test"
            for line in hidden:
                assert line not in text, (student, a, line)
                assert line.replace(", hidden=True", "") in text, (student, a, line)
            checked += 1
        assert "BEGIN HIDDEN TESTS" not in text and "hidden=True" not in text, (student, a)
        if mistake:
            assert f"Looks like: {mistake}" in text, (student, a)
    assert checked >= len(expected) - 2  # all but the corrupt and the empty submission


def test_broken_submissions_are_reported_not_fatal(graded_class):
    root, _, proc = graded_class
    grades = _grades(root)
    assert grades[("corrupt", "00_demo")]["status"] == "not graded"
    assert "not JSON" in grades[("corrupt", "00_demo")]["note"]
    assert "not JSON" in _feedback_text(root, "corrupt", "00_demo")
    assert "no notebook 00_demo.ipynb" in grades[("empty", "00_demo")]["note"]
    cheat = json.loads((root / "grader/verdicts/cheat-check/00_demo.json").read_text())
    assert all(t["kind"] == "no_record" for t in cheat["tests"])


def _expected_report(root: Path, expected: dict) -> dict:
    """The report's numbers for the known class, from what each student submitted: a
    catalogued mistake fails exactly its function's test, the unmodified notebook and
    the patched checker fail every test, the always-equal object fails affine."""
    reg = _registry()
    tests, mistakes, fractions = {}, {}, {}
    for (student, a), (score, mistake) in expected.items():
        fns = [fn for aa, fn in reg.EXERCISES if aa == a]
        fractions.setdefault(a, []).append(
            score / sum(reg.EXERCISES[(a, fn)].points for fn in fns))
        if not (root / "grader" / "verdicts" / student / f"{a}.json").is_file():
            continue  # not graded (corrupt, empty): no test ran
        # the mistake's function is in the student's name (longest match: rnn_step_backward
        # rather than rnn_step)
        wrong = max((fn for fn in fns if student.startswith(f"m-{a[:2]}-{_safe(fn)}-")),
                    key=len, default=None)
        failing = {"unmodified": fns, "cheat-check": fns, "eq-true": ["affine"]}.get(
            student, [wrong])
        for fn in fns:
            count = tests.setdefault(f"{a}:{fn}", [0, 0])
            count[0] += fn not in failing
            count[1] += 1
        if mistake:
            key = f"{a}:{wrong}: {mistake}"
            mistakes[key] = mistakes.get(key, 0) + 1
    return {"tests": tests, "mistakes": mistakes, "fractions": fractions}


def test_report_shows_the_class_numbers(graded_class):
    """The report's data (report/data.json: what its plots and tables are drawn from) is
    what the known class must give, and the page's tables show the same numbers."""
    root, expected, _ = graded_class
    want = _expected_report(root, expected)
    data = json.loads((root / "grader" / "report" / "data.json").read_text())
    assert data["tests"] == want["tests"]
    assert len(data["mistakes"]) == min(15, len(want["mistakes"]))
    assert all(want["mistakes"].get(k) == n for k, n in data["mistakes"]), data["mistakes"]
    assert data["score_fractions"] == {a: sorted(f) for a, f in want["fractions"].items()}
    for a, fractions in want["fractions"].items():
        bars = [0] * 10
        for f in fractions:
            bars[min(int(f * 10 + 1e-9), 9)] += 1
        assert data["histogram"][a] == bars, a
    assert {(s, a) for s, a, _ in data["not_graded"]} == {("corrupt", "00_demo"),
                                                         ("empty", "00_demo")}
    page = (root / "grader" / "report" / "index.html").read_text()
    for test, (passed, graded) in want["tests"].items():
        row = f"<tr><td>{html.escape(test)}</td><td>{passed}</td><td>{graded}</td></tr>"
        assert row in page, row
    for png in ("scores.png", "pass_rate.png", "mistakes.png"):
        assert (root / "grader" / "report" / png).stat().st_size > 1000
    # the similarity section is there; the blank notebooks (template code only) and the
    # broken ones are never flagged; flags change no score (see the expected scores)
    assert "<h2>Similar answers</h2>" in page
    flagged = {k[0] for k, row in _grades(root).items() if row["similarity"]}
    assert not flagged & {"unmodified", "corrupt", "empty"}, flagged
    db = root / "grader" / "gradebook.db"
    import sqlite3

    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _copy_of_class(graded_class, tmp_path: Path) -> Path:
    """A copy of the graded course (the module's class stays as graded)."""
    return shutil.copytree(graded_class[0], tmp_path / "course", symlinks=True)


def test_rerun_is_incremental_and_identical(graded_class, tmp_path):
    root = _copy_of_class(graded_class, tmp_path)
    before = (root / "grader" / "grades.csv").read_text()
    proc = run_grade(root)
    assert proc.returncode == 0, proc.stderr
    assert "graded 0," in proc.stdout
    assert (root / "grader" / "grades.csv").read_text() == before
    # change one submission: only it is graded again, with the same result
    nb_path = root / "grader/submitted/solution/00_demo/00_demo.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("an extra note"))
    nbformat.write(nb, nb_path)
    proc = run_grade(root)
    assert "graded 1," in proc.stdout, proc.stdout
    assert (root / "grader" / "grades.csv").read_text() == before


def test_bad_input_gives_clear_errors(tmp_path):
    proc = run_grade(tmp_path)
    assert proc.returncode == 2 and "no source notebooks" in proc.stderr
    deep = tmp_path / ("t" * 60)  # a temporary folder too deep for the kernels' sockets
    deep.mkdir()
    proc = run_grade(tmp_path, env={**ENV, "TMPDIR": str(deep)})
    assert proc.returncode == 2 and "too long a path for the kernels' sockets" in proc.stderr
    assert "set TMPDIR" in proc.stderr, proc.stderr
    proc = run_grade(tmp_path, "--zip", str(tmp_path / "nope.zip"))
    assert proc.returncode == 2


def test_lms_zip_is_collected_without_overwriting(graded_class, tmp_path):
    """An LMS download mixing Canvas names (late, resubmitted) and the course's own names:
    new students are collected and graded, an existing submission is never replaced."""
    import zipfile

    root = _copy_of_class(graded_class, tmp_path)
    sub = root / "grader/submitted/solution/00_demo/00_demo.ipynb"
    blank = root / "exercises/00_demo/00_demo.ipynb"
    archive = tmp_path / "lms.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("export/newcomer_00_demo.ipynb", sub.read_bytes())  # new: collected
        zf.writestr("solution_00_demo.ipynb", blank.read_bytes())  # differs: never overwritten
        zf.writestr("notes.txt", "ignored")
        zf.writestr("smithbob_340934_208490284_00_demo.ipynb", blank.read_bytes())
        zf.writestr("smithbob_LATE_340934_208490284_00_demo-1.ipynb", sub.read_bytes())
    before = sub.read_bytes()
    proc = run_grade(root, "--zip", str(archive), "--assignment", "00_demo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "solution already has a different 00_demo submission" in proc.stdout
    assert "not placed: notes.txt: not a notebook" in proc.stdout
    assert "not placed: smithbob_340934_208490284_00_demo.ipynb: an older submission" in proc.stdout
    assert sub.read_bytes() == before
    grades = _grades(root)
    assert float(grades[("newcomer", "00_demo")]["auto_score"]) == 3
    assert float(grades[("smithbob-340934", "00_demo")]["auto_score"]) == 3
    assert grades[("smithbob-340934", "00_demo")]["late"] == "late"
    assert grades[("newcomer", "00_demo")]["late"] == ""
    assert "graded 2," in proc.stdout


def test_zip_with_nothing_placeable_says_why(tmp_path):
    import zipfile

    shutil.copy(REPO / "nbgrader_config.py", tmp_path)
    shutil.copytree(DEMO / "solutions", tmp_path / "solutions")
    archive = tmp_path / "wrong.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("smithbob_340934_208490284_essay.docx", b"not a notebook")
        zf.writestr("leeann_340935_208490285_Untitled.ipynb", b"{}")
    proc = run_grade(tmp_path, "--zip", str(archive))
    assert proc.returncode == 2
    assert "no file of wrong.zip could be placed" in proc.stderr
    assert "or pass --zip FILE" not in proc.stderr
    assert "Untitled.ipynb: cannot tell which assignment" in proc.stdout
    proc = run_grade(tmp_path, "--roster", str(archive))
    assert proc.returncode == 2 and "use it with --zip FILE" in proc.stderr


def _finished(state: Path) -> dict:
    """The submissions a run state records as finished (the file is replaced atomically)."""
    try:
        return json.loads(state.read_text()).get("submissions", {})
    except (OSError, ValueError):
        return {}


def test_killed_run_resumes_with_identical_grades(graded_class, tmp_path, short_tmp_path):
    """SIGKILL the grader (one worker, so the run is surely mid-way) once k of the n demo
    submissions are finished: it dies of the signal, the rerun grades exactly the n - k
    others and keeps the k records, and the grades are those of an uninterrupted run.
    The killed run's temporary folder is left behind, and the rerun removes it."""
    import signal
    import sqlite3
    import time

    root, expected, _ = graded_class
    copy = tmp_path / "course"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(
        "autograded", "feedback", "verdicts", "report", "gradebook.db", "grades.csv",
        "grading_state.json", "downloaded", "backup"))
    demo = {k: v for k, v in expected.items() if k[1] == "00_demo"}
    n = len(list((copy / "grader" / "submitted").glob("*/00_demo")))  # with later arrivals
    tmp = short_tmp_path  # the runs' temporary folder, to see what each leaves
    env = {**ENV, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "grader", "grade", "--root", str(copy), "-q",
                             "-j", "1", "--assignment", "00_demo"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    state = copy / "grader" / "grading_state.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not _finished(state):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the grader, its worker and its kernel
    assert proc.wait() == -signal.SIGKILL, "the grader ended before it could be killed"
    done = _finished(state)
    assert 0 < len(done) < n, f"{len(done)} of {n} finished when killed"
    assert len(list(tmp.glob("bptt-grading-*"))) == 1  # what the killed run left
    rerun = run_grade(copy, "--assignment", "00_demo", env=env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert not list(tmp.glob("bptt-grading-*")), "the killed run's folder is still there"
    counts = re.search(r"graded (\d+), not gradable (\d+)", rerun.stdout)
    assert counts and int(counts[1]) + int(counts[2]) == n - len(done), rerun.stdout
    after = _finished(state)
    assert {k: after[k] for k in done} == done  # the finished ones were not graded again
    grades = _grades(copy)
    for key, (score, _) in demo.items():
        assert float(grades[key]["auto_score"]) == score, key
    with sqlite3.connect(copy / "grader" / "gradebook.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_self_check_exit_status_and_summary(graded_class):
    root, expected, _ = graded_class

    def check(path):
        return subprocess.run([sys.executable, "-m", "grader", "check", str(path)], cwd=REPO,
                              env=ENV, capture_output=True, text=True, timeout=300)

    sub = root / "grader" / "submitted"
    ok = check(sub / "solution/00_demo/00_demo.ipynb")
    assert ok.returncode == 0 and "PASS  affine (2 points)" in ok.stdout, ok.stdout + ok.stderr
    mistake = next(s for (s, a), (_, m) in expected.items() if a == "00_demo" and m)
    bad = check(sub / mistake / "00_demo/00_demo.ipynb")
    assert bad.returncode == 1 and "Looks like:" in bad.stdout, bad.stdout
    blank = check(root / "exercises/00_demo/00_demo.ipynb")
    assert blank.returncode == 1 and "not implemented yet" in blank.stdout
    assert "0 of 2 tests pass" in blank.stdout
    assert check(sub / "corrupt/00_demo/00_demo.ipynb").returncode == 2
