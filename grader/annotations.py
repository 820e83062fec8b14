"""The grades.csv columns that come from outside the autograder.

``late``: the LMS marked the submission late (Canvas' ``_LATE_``, kept by grader.intake).
"""
from __future__ import annotations

from pathlib import Path

from . import intake

COLUMNS = ["late"]


def annotate(root: Path, rows: list[dict]) -> None:
    """Add :data:`COLUMNS` to each grades.csv row ({"student", "assignment", ...})."""
    record = intake.load_record(root)
    for row in rows:
        row["late"] = "late" if intake.is_late(record, root, row["student"],
                                               row["assignment"]) else ""
