"""``python -m grader export --format canvas|moodle``: grades.csv as the LMS imports it.

Canvas (Grades > Import) reads its own gradebook CSV: the columns ``Student, ID, SIS User
ID, SIS Login ID, Section``, then one column per assignment headed ``<name> (<Canvas
assignment id>)`` (a header without the id makes Canvas create a new assignment), and an
optional "Points Possible" row. Canvas matches a row by ``ID`` (its user id) or the SIS
ids.

Moodle (Grades > Import > CSV file) maps one identifier column to a user field (email
address, ID number or username) and each grade column to a grade item; a feedback
column may go with each grade.

Who is who comes from the roster (``--roster``, see ``grader.intake.Roster``) and,
without one, from what the zip intake recorded (the Canvas user id in the file names).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from . import intake
from .atomic_files import replace_text
from .pipeline import GradingError

CANVAS_FIXED = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MOODLE_IDS = [("email", "Email address"), ("id_number", "ID number"), ("username", "Username")]


def read_grades(root: Path, assignments: list[str] | None) -> list[dict]:
    path = root / "grader" / "grades.csv"
    if not path.is_file():
        raise GradingError(f"no {path}: run `python -m grader grade` first")
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if not assignments or r["assignment"] in assignments]
    if not rows:
        raise GradingError(f"{path} has no grades"
                           + (f" for {', '.join(assignments)}" if assignments else ""))
    return rows


def people(root: Path, roster: intake.Roster | None) -> dict[str, dict]:
    """{student id: roster-style row} from the roster, else from grader/intake.json."""
    if roster:
        return dict(roster.by_student)
    out = {}
    for student, who in intake.load_record(root)["students"].items():
        row = dict.fromkeys(intake.Roster.COLUMNS, "")
        row.update(student_id=student, name=who.get("name", ""))
        if who.get("lms") == "canvas":
            row["lms_id"] = who.get("lms_id", "")
        out[student] = row
    return out


def _table(rows: list[dict]) -> tuple[list[str], dict, dict]:
    """(assignments, {student: {assignment: grades.csv row}}, {assignment: max score})."""
    names = sorted({r["assignment"] for r in rows})
    by_student: dict[str, dict] = {}
    maxima = {}
    for r in rows:
        by_student.setdefault(r["student"], {})[r["assignment"]] = r
        maxima[r["assignment"]] = r["max_score"]
    return names, by_student, maxima


def canvas_rows(rows, who: dict, lms_ids: dict) -> tuple[list[list[str]], list[str]]:
    """(CSV rows with header and Points Possible row, students left out with why)."""
    names, by_student, maxima = _table(rows)
    columns = [f"{a} ({lms_ids[a]})" if a in lms_ids else a for a in names]
    out = [CANVAS_FIXED + columns, ["Points Possible", "", "", "", ""] +
           [maxima[a] for a in names]]
    left_out = []
    for student, grades in sorted(by_student.items()):
        p = who.get(student)
        if not p or not (p["lms_id"] or p["sis_user_id"] or p["sis_login_id"]):
            left_out.append(f"{student}: no Canvas user id or SIS id (add the student to "
                            "--roster with lms_id or sis_login_id)")
            continue
        out.append([p["name"] or student, p["lms_id"], p["sis_user_id"], p["sis_login_id"],
                    p["section"]] + [grades[a]["score"] if a in grades else "" for a in names])
    return out, left_out


def moodle_rows(rows, who: dict) -> tuple[list[list[str]], list[str]]:
    names, by_student, maxima = _table(rows)
    present = [(key, header) for key, header in MOODLE_IDS
               if any(p[key] for p in who.values())]
    if not present:
        raise GradingError("Moodle matches students by email address, ID number or "
                           "username: pass --roster with an email, id_number or username "
                           "column")
    header = [h for _, h in present] + ["Full name"]
    for a in names:
        header += [f"{a} (out of {maxima[a]})", f"Feedback: {a}"]
    out, left_out = [header], []
    for student, grades in sorted(by_student.items()):
        p = who.get(student)
        if not p or not any(p[key] for key, _ in present):
            left_out.append(f"{student}: no {' / '.join(h for _, h in present)} in the roster")
            continue
        line = [p[key] for key, _ in present] + [p["name"] or student]
        for a in names:
            g = grades.get(a)
            line += [g["score"], feedback_text(g)] if g else ["", ""]
        out.append(line)
    return out, left_out


def feedback_text(g: dict) -> str:
    """The feedback an LMS shows next to a grade: the parts of the score and notes."""
    parts = [f"autograded {g['auto_score']}/{g['auto_max_score']}"]
    if g.get("manual_score"):
        parts.append(f"written answers {g['manual_score']}/{g.get('manual_max_score', '')}")
    if g.get("comments"):
        parts.append(g["comments"])
    if g.get("late"):
        parts.append("submitted late")
    if g.get("status") == "not graded":
        parts.append(f"not graded: {g.get('note', '')}")
    return "; ".join(parts)


def export(root: Path, fmt: str, roster: intake.Roster | None = None,
           assignments: list[str] | None = None, lms_ids: dict | None = None,
           out: Path | None = None, log=print) -> Path:
    """Write the LMS's import CSV; returns its path."""
    rows = read_grades(root, assignments)
    who = people(root, roster)
    if fmt == "canvas":
        table, left_out = canvas_rows(rows, who, lms_ids or {})
        first_data = 2
    elif fmt == "moodle":
        table, left_out = moodle_rows(rows, who)
        first_data = 1
    else:
        raise GradingError(f"unknown export format {fmt!r}: use canvas or moodle")
    if len(table) == first_data:
        raise GradingError(f"no student could be exported for {fmt}:\n  " + "\n  ".join(left_out))
    path = Path(out) if out else root / "grader" / "export" / f"{fmt}.csv"
    text = io.StringIO(newline="")
    csv.writer(text).writerows(table)
    replace_text(path, text.getvalue())
    pending = sum(r.get("needs_manual_grade") == "True" for r in rows)
    log(f"wrote {path}: {len(table) - first_data} students")
    if pending:
        log(f"warning: {pending} submissions still have written answers to grade; their "
            "score is the autograded part only (python -m grader written)")
    for line in left_out:
        log(f"  not exported: {line}")
    return path
