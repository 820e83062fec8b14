"""Where the exercises come from: ``grader.exercises.EXERCISES`` (the course's registry).

``COURSE_EXERCISES_MODULE`` names another module with the same ``EXERCISES`` dict
(the grading tests use a small demo registry in tests/fixtures)."""
from __future__ import annotations

import importlib
import os

DEFAULT_MODULE = "grader.exercises"


def module_name() -> str:
    return os.environ.get("COURSE_EXERCISES_MODULE") or DEFAULT_MODULE


def exercises() -> dict:
    """{(assignment, name): Exercise}."""
    mod = importlib.import_module(module_name())
    return dict(getattr(mod, "EXERCISES", {}) or {})


def exercise(assignment: str, name: str):
    table = exercises()
    try:
        return table[(assignment, name)]
    except KeyError:
        known = sorted(n for a, n in table if a == assignment)
        raise KeyError(
            f"no exercise {name!r} in assignment {assignment!r}; "
            f"known: {', '.join(known) or 'none'}") from None


def for_assignment(assignment: str) -> dict:
    """{name: Exercise} of one assignment."""
    return {n: ex for (a, n), ex in exercises().items() if a == assignment}


def mistake_sources() -> dict:
    """The registry's MISTAKE_SOURCES if the registry has it: {(assignment, mistake name): source}."""
    mod = importlib.import_module(module_name())
    return dict(getattr(mod, "MISTAKE_SOURCES", {}) or {})
