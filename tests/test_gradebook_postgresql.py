"""The course with its gradebook on a real PostgreSQL server (the ``postgresql_url``
fixture: Debian's server, started for the session).

A small class of the demo assignment is graded into the default SQLite gradebook; then
the same course is pointed at a new PostgreSQL database, as an instructor moving to a
server does, and graded again:

* every submission is graded into the new database, and grades.csv and the report's
  numbers are the same as with SQLite;
* grading again with --force leaves every table of nbgrader's gradebook as it was;
* marks saved through `python -m grader written` reach the gradebook, grades.csv and
  the Canvas export;
* a server that cannot be used (down, no such database, wrong password) stops
  `grade` and `written` with an error that says what is wrong and how to fix it,
  never shows the password, and writes nothing.
"""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import pytest

from helpers import DEMO, DEMO_ENV, REPO, run_grade
from postgres_server import free_port

A = "00_demo"
WRITTEN = "why_max"  # the demo's written question (1 point)


def _class(root: Path) -> None:
    """Three submissions: full marks with a written answer of the student's own, one
    catalogued mistake, and a file that is not a notebook."""
    from grader import synthetic

    blank = root / "exercises" / A / f"{A}.ipynb"
    solved = synthetic.solved(root / "solutions" / A / f"{A}.ipynb", blank)
    own = nbformat.from_dict(dict(solved))
    for cell in own.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == WRITTEN:
            cell.source = "Softmax is shift-invariant; the shift keeps exp finite."
    synthetic.write_submission(root, "ada", A, own)
    synthetic.write_submission(root, "bo", A, synthetic.with_cell_replaced(
        solved, "affine", "def affine(x, w, b):\n    return x @ w.T\n"))  # bias forgotten
    broken = root / "grader" / "submitted" / "ed" / A
    broken.mkdir(parents=True)
    (broken / f"{A}.ipynb").write_text('{"cells": [')


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """The demo course with the class submitted, not graded (copy it before use)."""
    from grader import synthetic

    root = synthetic.make_course(tmp_path_factory.mktemp("course") / "c", DEMO, [A])
    _class(root)
    return root


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory, postgresql_url):
    """(SQLite course, PostgreSQL course, its gradebook URL): the class graded into
    SQLite, then that course copied and pointed at a new PostgreSQL database, as an
    instructor moving to a server does: everything is graded again into the server."""
    sqlite_root = tmp_path_factory.mktemp("sqlite") / "course"
    shutil.copytree(course, sqlite_root)
    proc = run_grade(sqlite_root, "-j", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pg_root = tmp_path_factory.mktemp("postgresql") / "course"
    shutil.copytree(sqlite_root, pg_root)
    sqlite_file = (pg_root / "grader" / "gradebook.db").read_bytes()
    url = postgresql_url()
    proc = run_grade(pg_root, "-j", "2", env={**DEMO_ENV, "COURSE_DB_URL": url})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "graded 2, not gradable 1" in proc.stdout, proc.stdout
    assert _password(url) not in proc.stdout + proc.stderr
    assert (pg_root / "grader" / "gradebook.db").read_bytes() == sqlite_file
    return sqlite_root, pg_root, url


def _password(url: str) -> str:
    return re.search(r"://[^:]+:([^@]+)@", url).group(1)


def _grades_csv(root: Path) -> list[dict]:
    with open(root / "grader" / "grades.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def dump(url: str) -> dict[str, list[tuple]]:
    """Every row of every table of nbgrader's gradebook schema, sorted."""
    from nbgrader.api import Base
    from sqlalchemy import create_engine, select

    engine = create_engine(url)
    try:
        with engine.connect() as con:
            return {name: sorted((tuple(row) for row in con.execute(select(table))), key=repr)
                    for name, table in sorted(Base.metadata.tables.items())}
    finally:
        engine.dispose()


def test_grades_and_report_equal_the_sqlite_run(graded):
    sqlite_root, pg_root, url = graded
    rows = _grades_csv(pg_root)
    assert rows == _grades_csv(sqlite_root)
    by_student = {r["student"]: r for r in rows}
    # the class is graded for real: full marks, a mistake, not a notebook
    assert [by_student[s]["auto_score"] for s in ("ada", "bo", "ed")] == ["3", "1", "0"]
    assert by_student["ed"]["status"] == "not graded"
    data = [(root / "grader" / "report" / "data.json").read_text()
            for root in (sqlite_root, pg_root)]
    assert data[0] == data[1]
    students = {row[0] for row in dump(url)["student"]}
    assert students >= {"ada", "bo"}


def test_grading_twice_leaves_an_identical_gradebook(graded):
    _, pg_root, url = graded
    before = dump(url)
    assert sum(len(rows) for rows in before.values()) > 30, "the gradebook is nearly empty"
    csv_before = _grades_csv(pg_root)
    proc = run_grade(pg_root, "-j", "2", "--force",
                     env={**DEMO_ENV, "COURSE_DB_URL": url})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "graded 2, not gradable 1" in proc.stdout
    after = dump(url)
    for table in before:
        assert after[table] == before[table], table
    assert _grades_csv(pg_root) == csv_before


def test_written_marks_reach_the_gradebook_and_grades_csv(graded):
    _, pg_root, url = graded
    env = {**DEMO_ENV, "COURSE_DB_URL": url}
    server = subprocess.Popen(
        [sys.executable, "-m", "grader", "written", "--root", str(pg_root), "--port", "0"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)", line)
        assert found, line + (server.stderr.read() if server.poll() is not None else "")
        port, token = found.groups()
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/q/0?token={token}",
                                      timeout=60).read().decode()
        assert "shift-invariant" in page  # ada's own answer
        form = urllib.parse.urlencode({"token": token, "score:ada": "1",
                                       "comment:ada": "right, both reasons",
                                       "score:bo": "0.5", "comment:bo": ""}).encode()
        saved = urllib.request.urlopen(f"http://127.0.0.1:{port}/q/0", data=form,
                                       timeout=300).read().decode()
        assert "Saved: 2 changed" in saved
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert _password(url) not in line + out + err
    rows = {r["student"]: r for r in _grades_csv(pg_root)}
    assert rows["ada"]["manual_score"] == "1" and rows["bo"]["manual_score"] == "0.5"
    assert rows["ada"]["score"] == "4" and "right, both reasons" in rows["ada"]["comments"]
    roster = pg_root / "roster.csv"
    roster.write_text("student_id,lms_id\nada,101\nbo,102\ned,103\n")
    export = subprocess.run(
        [sys.executable, "-m", "grader", "export", "--root", str(pg_root), "--format",
         "canvas", "--roster", str(roster), "--lms-assignment", f"{A}=7"], cwd=REPO,
        env=env, capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stdout + export.stderr
    canvas = list(csv.reader((pg_root / "grader" / "export" / "canvas.csv").open()))
    assert ["ada", "101", "", "", "", "4"] in canvas and ["bo", "102", "", "", "", "1.5"] in canvas
    from nbgrader.api import Gradebook

    with Gradebook(url) as gb:  # straight from the server, not through the grader
        assert gb.find_grade(WRITTEN, A, A, "ada").manual_score == 1.0
        assert gb.find_comment(WRITTEN, A, A, "ada").manual_comment == "right, both reasons"
        assert gb.find_grade(WRITTEN, A, A, "bo").manual_score == 0.5


def _snapshot(root: Path) -> dict[str, tuple]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("problem", ["server down", "no such database", "wrong password"])
def test_an_unusable_server_is_a_clear_error_and_nothing_is_written(
        problem, course, tmp_path, postgresql_url):
    working = postgresql_url()  # a live server: its port, user and password are real
    base = working.rpartition("/")[0]
    password = _password(working)
    url, fix = {
        "server down": (re.sub(r":\d+/", f":{free_port()}/", working), "start the server"),
        "no such database": (f"{base}/no_such_gradebook", "createdb"),
        "wrong password": (working.replace(f":{password}@", ":not-the-password@"),
                           "correct the user name or password"),
    }[problem]
    root = tmp_path / "course"
    shutil.copytree(course, root)
    before = _snapshot(root)
    runs = [run_grade(root, env={**DEMO_ENV, "COURSE_DB_URL": url})]
    if problem == "server down":  # the written-answers page opens the gradebook the same way
        runs.append(subprocess.run(
            [sys.executable, "-m", "grader", "written", "--root", str(root), "--port", "0"],
            cwd=REPO, env={**DEMO_ENV, "COURSE_DB_URL": url}, capture_output=True,
            text=True, timeout=300))
    shown = re.sub(r":[^:@/]+@", ":***@", url)
    for run in runs:
        out = run.stdout + run.stderr
        assert run.returncode == 2, out
        assert f"error: cannot open the gradebook {shown}" in run.stderr, out
        assert fix in run.stderr and "COURSE_DB_URL" in run.stderr, out
        assert password not in out and "not-the-password" not in out
        assert "Traceback" not in out
    assert _snapshot(root) == before


def test_a_course_pointed_back_at_its_sqlite_gradebook_is_graded_into_it(graded, tmp_path):
    """After the move, a new submission (dan) is graded into the server only; pointed
    back at its SQLite file (which holds the class as graded before the move), the
    course grades every submission into that file again: the run state tells what the
    server's gradebook holds, not this one."""
    _, pg_root, url = graded
    root = shutil.copytree(pg_root, tmp_path / "course")
    shutil.copytree(root / "grader" / "submitted" / "ada", root / "grader" / "submitted" / "dan")
    proc = run_grade(root, env={**DEMO_ENV, "COURSE_DB_URL": url})
    assert "graded 1, not gradable 0" in proc.stdout, proc.stdout + proc.stderr
    proc = run_grade(root)  # COURSE_DB_URL unset: the course's SQLite file
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "every submission is graded into it" in proc.stdout, proc.stdout
    assert "graded 3, not gradable 1" in proc.stdout, proc.stdout
    assert _password(url) not in proc.stdout + proc.stderr
    rows = {r["student"]: r for r in _grades_csv(root)}
    assert rows["dan"]["status"] == "graded" and rows["dan"]["auto_score"] == "3", rows["dan"]


def test_a_killed_test_run_leaves_no_server_behind():
    """The tests' server outlives no test run: a process that started one and is killed
    (SIGKILL: no fixture teardown) has it stopped and its folder removed by the guard."""
    import signal
    import socket
    import time

    child = ("import sys; sys.path[:0] = ['tests']; from postgres_server import PostgresServer; "
             "s = PostgresServer(); s.start(); print(s.port, s.folder, flush=True); "
             "sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    port, folder = proc.stdout.readline().split()
    socket.create_connection(("127.0.0.1", int(port)), timeout=10).close()  # control: up
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    proc.stdin.close()
    proc.stdout.close()
    deadline = time.monotonic() + 60
    while Path(folder).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(folder).exists(), "the killed run's server folder is still there"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(port)), timeout=10).close()
