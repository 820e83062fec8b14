"""What grades.csv and the report show beyond the autograder.

Columns of grades.csv:
``manual_score``, ``manual_max_score``, ``comments``: the written answers, graded by hand
(grader.written or nbgrader's formgrader; ``score`` already includes them).
``late``: the LMS marked the submission late (Canvas' ``_LATE_``, kept by grader.intake).
``similarity``: answers that share most of their code with course_lib or a classmate
(grader.similarity); a flag for the instructor, the score is untouched.
"""
from __future__ import annotations

from pathlib import Path

from . import intake, similarity, written

COLUMNS = ["manual_score", "manual_max_score", "comments", "late", "similarity"]


def annotate(root: Path, rows: list[dict]) -> None:
    """Add :data:`COLUMNS` to each grades.csv row ({"student", "assignment", ...})."""
    record = intake.load_record(root)
    flags = similarity.notes(similarity.load(root))
    manual = written.manual_columns(root)
    for row in rows:
        key = (row["student"], row["assignment"])
        row.update(manual.get(key, dict.fromkeys(COLUMNS[:3], "")))
        row["similarity"] = flags.get(key, "")
        row["late"] = "late" if intake.is_late(record, root, *key) else ""


def report_sections(root: Path) -> str:
    """The report's sections on the written answers and on similar answers (HTML)."""
    return written.report_section(root) + "\n" + similarity.report_section(root)
