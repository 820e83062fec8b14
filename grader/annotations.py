"""The grades.csv columns that come from outside the autograder.

``late``: the LMS marked the submission late (Canvas' ``_LATE_``, kept by grader.intake).
``similarity``: answers that share most of their code with course_lib or a classmate
(grader.similarity); a flag for the instructor, the score is untouched.
"""
from __future__ import annotations

from pathlib import Path

from . import intake, similarity

COLUMNS = ["late", "similarity"]


def annotate(root: Path, rows: list[dict]) -> None:
    """Add :data:`COLUMNS` to each grades.csv row ({"student", "assignment", ...})."""
    record = intake.load_record(root)
    flags = similarity.notes(similarity.load(root))
    for row in rows:
        row["similarity"] = flags.get((row["student"], row["assignment"]), "")
        row["late"] = "late" if intake.is_late(record, root, row["student"],
                                               row["assignment"]) else ""
