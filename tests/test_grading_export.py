"""`python -m grader export`: the CSV each LMS imports, parsed back with the columns
that LMS requires. The grades come from a grades.csv and intake record written here
(grading itself is tested in test_grading_pipeline.py)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from grader import annotations, export, intake, report

REPO = Path(__file__).resolve().parent.parent

GRADES = [  # student, assignment, score, max, auto, auto max, needs manual, status, late
    ("smithbob-340934", "03_bptt", "9", "10", "8", "9", "False", "graded", "late"),
    ("leeann-340935", "03_bptt", "5", "10", "5", "9", "True", "graded", ""),
    ("leeann-340935", "04_truncation", "0", "6", "0", "5", "False", "not graded", ""),
    ("ghost", "03_bptt", "7", "10", "7", "9", "False", "graded", ""),
]


@pytest.fixture
def course(tmp_path):
    (tmp_path / "grader").mkdir()
    with open(tmp_path / "grader" / "grades.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=report.CSV_FIELDS + annotations.COLUMNS,
                           restval="")
        w.writeheader()
        for s, a, score, mx, auto, amx, manual, status, late in GRADES:
            w.writerow(dict(student=s, assignment=a, score=score, max_score=mx,
                            auto_score=auto, auto_max_score=amx, needs_manual_grade=manual,
                            status=status, note="kernel died" if status != "graded" else "",
                            late=late))
    record = {"students": {"smithbob-340934": {"lms": "canvas", "lms_id": "340934",
                                               "name": "smithbob"},
                           "leeann-340935": {"lms": "canvas", "lms_id": "340935",
                                             "name": "leeann"}},
              "submissions": {}}
    (tmp_path / "grader" / "intake.json").write_text(json.dumps(record))
    return tmp_path


def read_back(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_canvas_gradebook_csv_from_intake_ids(course):
    lines = []
    path = export.export(course, "canvas", lms_ids={"03_bptt": "4521"}, log=lines.append)
    table = read_back(path)
    header, points, *rows = table
    assert header[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert header[5:] == ["03_bptt (4521)", "04_truncation"]
    assert points[0] == "Points Possible" and points[5:] == ["10", "6"]
    by_id = {r[1]: dict(zip(header, r)) for r in rows}
    assert set(by_id) == {"340934", "340935"}  # Canvas matches rows by its user ID
    assert by_id["340934"]["03_bptt (4521)"] == "9"
    assert by_id["340935"]["04_truncation"] == "0"
    assert by_id["340934"]["04_truncation"] == ""  # no submission: left blank, not zero
    for r in rows:
        for col in header[5:]:
            assert r[header.index(col)] == "" or float(r[header.index(col)]) >= 0
    out = "\n".join(lines)
    assert "not exported: ghost: no Canvas user id" in out
    assert "1 submissions still have written answers to grade" in out


def test_moodle_import_csv_with_roster_and_cli(course):
    roster = course / "roster.csv"
    roster.write_text("student_id,name,email,id_number\n"
                      "smithbob-340934,Bob Smith,bob@uni.example,S1\n"
                      "leeann-340935,Ann Lee,ann@uni.example,S2\n"
                      "ghost,Gus Host,gus@uni.example,S3\n")
    proc = subprocess.run([sys.executable, "-m", "grader", "export", "--root", str(course),
                           "--format", "moodle", "--roster", str(roster)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with open(course / "grader" / "export" / "moodle.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"Email address", "ID number"} <= set(rows[0])  # identifiers Moodle maps
    by_email = {r["Email address"]: r for r in rows}
    assert set(by_email) == {"bob@uni.example", "ann@uni.example", "gus@uni.example"}
    bob = by_email["bob@uni.example"]
    assert float(bob["03_bptt (out of 10)"]) == 9
    assert "submitted late" in bob["Feedback: 03_bptt"]
    assert "not graded: kernel died" in by_email["ann@uni.example"]["Feedback: 04_truncation"]
    for r in rows:
        for col, value in r.items():
            if col.endswith(")") and value:
                assert 0 <= float(value) <= float(col.rsplit(" ", 1)[1][:-1])


def test_export_errors_say_what_to_do(course, tmp_path):
    with pytest.raises(export.GradingError, match="pass --roster with an email"):
        export.export(course, "moodle")
    with pytest.raises(export.GradingError, match="run `python -m grader grade` first"):
        export.export(tmp_path / "nowhere", "canvas")
    roster = intake.Roster([{**dict.fromkeys(intake.Roster.COLUMNS, ""), "student_id": "x"}])
    with pytest.raises(export.GradingError, match="no student could be exported"):
        export.export(course, "canvas", roster=roster)
    proc = subprocess.run([sys.executable, "-m", "grader", "export", "--root", str(course),
                           "--format", "canvas", "--lms-assignment", "03_bptt"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "ASSIGNMENT=ID" in proc.stderr
