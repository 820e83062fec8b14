"""grader.record: the one writer of grades (gradebook rows, files, run state), on a real
nbgrader gradebook, without grading anything."""
from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

from helpers import DEMO, REPO

A = "00_demo"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    from grader import pipeline

    root = tmp_path_factory.mktemp("course")
    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copytree(DEMO / "solutions" / A, root / "solutions" / A)
    (root / "grader").mkdir()
    pipeline.sync_gradebook(root, [A], {})
    return root


@pytest.fixture
def gb(course):
    from nbgrader.api import Gradebook

    db = course / "grader" / "gradebook.db"
    fresh = db.with_name("fresh.db")
    if not fresh.exists():
        shutil.copyfile(db, fresh)
    shutil.copyfile(fresh, db)  # every test starts from the gradebook with no student
    with Gradebook(f"sqlite:///{db}") as book:
        yield book


def _result(gb, student="ada", score=1.0, status="graded"):
    """A worker's result for ``student``: every grade cell gets ``score``."""
    nb = gb.find_assignment(A).notebooks[0]
    graded = status == "graded"
    return {
        "student": student, "assignment": A, "digest": "d1", "fingerprint": "f1",
        "status": status, "reason": "" if graded else "not JSON", "seconds": 1.234,
        "sandboxed": True, "timestamp": "2026-11-30 12:00:00" if graded else None,
        "notebooks": {nb.name: {
            "grades": {c.name: {"auto_score": score, "needs_manual_grade": False}
                       for c in nb.grade_cells},
            "comments": {c.name: None for c in nb.solution_cells},
            "late_submission_penalty": None}} if graded else None,
        "files": {"feedback": b"<html>page</html>",
                  "autograded": b"{}" if graded else None,
                  "verdict": b'{"tests": []}' if graded else None}}


def _dump(course) -> list:
    """Every row of every table of the gradebook (ids included), sorted."""
    with sqlite3.connect(course / "grader" / "gradebook.db") as con:
        tables = [r[0] for r in con.execute(
            "select name from sqlite_master where type='table' order by name")]
        return [(t, sorted(map(repr, con.execute(f"select * from {t}")))) for t in tables]


def _files(course) -> dict:
    out = {}
    for folder in ("feedback", "autograded", "verdicts"):
        for dirpath, _, names in os.walk(course / "grader" / folder):
            for n in names:
                p = os.path.join(dirpath, n)
                out[os.path.relpath(p, course)] = open(p, "rb").read()
    return out


def test_a_result_is_written_once_and_applying_it_again_changes_nothing(course, gb):
    from grader import record

    state: dict = {}
    result = _result(gb)
    record.apply(course, gb, result, state)
    sub = gb.find_submission(A, "ada")
    assert str(sub.timestamp) == "2026-11-30 12:00:00"
    assert all(g.auto_score == 1.0 for nb in sub.notebooks for g in nb.grades)
    assert state["submissions"]["ada/00_demo"]["digest"] == "d1"
    rows, files, entry = _dump(course), _files(course), dict(state["submissions"])
    assert files["grader/feedback/ada/00_demo/00_demo.html"] == b"<html>page</html>"
    record.apply(course, gb, result, state)
    assert _dump(course) == rows
    assert _files(course) == files
    assert state["submissions"] == entry


def test_manual_scores_are_kept_and_decide_needs_manual_grade(course, gb):
    from grader import record

    record.apply(course, gb, _result(gb), {})
    nb = gb.find_assignment(A).notebooks[0]
    marked = nb.grade_cells[0].name
    gb.find_grade(marked, nb.name, A, "ada").manual_score = 0.5
    gb.db.commit()
    assert record.manual_marks(gb, A, "ada") == {"scores": {(nb.name, marked): 0.5},
                                                 "comments": {}}
    record.apply(course, gb, _result(gb, score=0.0), {})
    for cell in nb.grade_cells:
        grade = gb.find_grade(cell.name, nb.name, A, "ada")
        assert grade.auto_score == 0.0
        # nbgrader's SaveAutoGrades: a manual score asks for a look by hand
        assert grade.needs_manual_grade is (cell.name == marked)
        assert grade.manual_score == (0.5 if cell.name == marked else None)


def test_a_failed_grading_clears_the_old_grade_and_stale_files(course, gb):
    from grader import record

    record.apply(course, gb, _result(gb), {})
    (course / "grader/feedback/ada/00_demo/evil.html").write_text("<script>")
    record.apply(course, gb, _result(gb, status="not graded"), {})
    sub = gb.find_submission(A, "ada")
    assert all(g.auto_score is None and g.needs_manual_grade for nb in sub.notebooks
               for g in nb.grades)
    files = _files(course)
    assert not (course / "grader/autograded/ada/00_demo").exists()
    assert "grader/verdicts/ada/00_demo.json" not in files
    assert sorted(p for p in files if "feedback" in p) == [
        "grader/feedback/ada/00_demo/00_demo.html"]


def test_files_are_never_written_through_a_link(course, gb, tmp_path):
    from grader import record

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(course / "grader" / "feedback" / "eve", ignore_errors=True)
    (course / "grader" / "feedback").mkdir(exist_ok=True)
    os.symlink(elsewhere, course / "grader" / "feedback" / "eve")
    with pytest.raises(record.RecordError, match="not a folder of the grader"):
        record.write_files(course, _result(gb, student="eve"))
    assert not any(elsewhere.iterdir())
    # a link planted where the file goes is replaced, its target untouched
    target = tmp_path / "target.html"
    target.write_text("mine")
    folder = course / "grader" / "feedback" / "zed" / A
    folder.mkdir(parents=True)
    os.symlink(target, folder / f"{A}.html")
    record.write_files(course, _result(gb, student="zed"))
    assert target.read_text() == "mine"
    assert not (folder / f"{A}.html").is_symlink()


def _rows_but_ids(db) -> dict:
    """{table: (its CREATE statement, its rows without id columns, sorted)}."""
    with sqlite3.connect(db) as con:
        out = {}
        for table, sql in con.execute(
                "select name, sql from sqlite_master where type='table' order by name"):
            cols = [r[1] for r in con.execute(f"pragma table_info({table})")]
            keep = [i for i, c in enumerate(cols) if c != "id" and not c.endswith("_id")]
            out[table] = (sql, sorted(repr([row[i] for i in keep])
                                      for row in con.execute(f"select * from {table}")))
        return out


def test_a_new_gradebook_is_the_one_nbgrader_makes(course, tmp_path, monkeypatch):
    """The workers' template (and so a new course gradebook, its copy) is made with
    nbgrader's schema and version stamped in this process: the same tables, schema
    version and rows (ids aside) as when nbgrader creates the file itself."""
    from grader import gradebook, pipeline

    root = tmp_path / "course"
    shutil.copytree(course, root, ignore=shutil.ignore_patterns("*.db", "backup"))
    pipeline.template_gradebook(root, [A])
    ours = _rows_but_ids(root / "grader" / pipeline.TEMPLATE_FILE)
    monkeypatch.setattr(gradebook, "new_gradebook", lambda url: None)  # nbgrader alone
    (root / "grader" / pipeline.TEMPLATE_KEY).unlink()  # made again
    pipeline.template_gradebook(root, [A])
    assert ours == _rows_but_ids(root / "grader" / pipeline.TEMPLATE_FILE)
    assert ours["alembic_version"][1] and ours["grade_cells"][1]


def test_a_full_release_makes_the_template_the_next_run_uses(tmp_path, monkeypatch):
    """`grader release` of every assignment to exercises/ leaves the workers' template
    gradebook with its key, which the next run takes as it is (not made again); a
    release to another folder leaves none."""
    from grader import pipeline, release

    monkeypatch.syspath_prepend(str(DEMO))
    monkeypatch.setenv("COURSE_EXERCISES_MODULE", "demo_registry")
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copytree(DEMO / "solutions" / A, root / "solutions" / A)
    template = root / "grader" / pipeline.TEMPLATE_FILE
    release.release(root, tmp_path / "elsewhere", log=lambda *_: None)
    assert (tmp_path / "elsewhere" / A / f"{A}.ipynb").is_file() and not template.exists()
    release.release(root, log=lambda *_: None)
    assert (root / "exercises" / A / f"{A}.ipynb").is_file() and template.is_file()
    made = template.stat().st_mtime_ns, template.read_bytes()
    assert pipeline.template_gradebook(root, [A]).data == made[1]
    assert template.stat().st_mtime_ns == made[0]  # taken, not made again
    assert _rows_but_ids(template)["grade_cells"][1]
