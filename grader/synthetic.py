"""Synthetic submissions for the grading tests and benchmark.

* ``solved(a)``: the student notebook with every solution cell filled in from the
  instructor's source (markers removed): what a perfect student submits.
* ``with_cell_replaced(nb, fn, source)``: the solution cell that defines ``fn``
  replaced by ``source`` (a catalogued mistake: exactly one function wrong).
* ``make_course(dest, ...)``: a scratch course root (config + solutions + exercises)
  so tests never touch the repository's own grader/ folders.
"""
from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import nbformat

from . import nbapi

_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.M)


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def solved(solution_nb, exercise_nb):
    """The exercise notebook with the solutions' answers typed in."""
    sol = nbformat.read(solution_nb, as_version=4)
    ex = nbformat.read(exercise_nb, as_version=4)
    answers = {_nbgrader(c).get("grade_id"): _MARKERS.sub("", c.source)
               for c in sol.cells if _nbgrader(c).get("solution")}
    out = copy.deepcopy(ex)
    for cell in out.cells:
        gid = _nbgrader(cell).get("grade_id")
        if _nbgrader(cell).get("solution") and gid in answers:
            cell.source = answers[gid]
    return out


def defining_cell(nb, fn_name: str):
    pattern = re.compile(rf"^def {re.escape(fn_name)}\s*\(", re.M)
    for cell in nb.cells:
        if cell.cell_type == "code" and _nbgrader(cell).get("solution") and \
                pattern.search(cell.source):
            return cell
    raise KeyError(f"no solution cell defines {fn_name}()")


def with_cell_replaced(nb, fn_name: str, source: str):
    out = copy.deepcopy(nb)
    defining_cell(out, fn_name).source = source
    return out


def mistake_fn_name(key, source: str) -> str:
    """The function a MISTAKE_SOURCES entry replaces: (a, fn, mistake) keys name it,
    (a, mistake) keys are read from the source's first ``def``."""
    if isinstance(key, tuple) and len(key) == 3:
        return key[1]
    m = re.search(r"^def (\w+)\s*\(", source, re.M)
    if not m:
        raise ValueError(f"mistake source {key!r} defines no function")
    return m.group(1)


def write_submission(root, student: str, assignment: str, nb) -> Path:
    folder = Path(root) / "grader" / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{assignment}.ipynb"
    nbformat.write(nb, path)
    return path


def make_course(dest, solutions_root=None, assignments=None) -> Path:
    """A scratch course root: nbgrader_config.py, solutions/<a>/, exercises/<a>/."""
    from . import release

    dest = Path(dest)
    solutions_root = Path(solutions_root or nbapi.REPO_ROOT)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(nbapi.REPO_ROOT / "nbgrader_config.py", dest / "nbgrader_config.py")
    assignments = assignments or nbapi.source_assignments(solutions_root)
    for a in assignments:
        shutil.copytree(solutions_root / "solutions" / a, dest / "solutions" / a,
                        dirs_exist_ok=True)
    release.release(dest, assignments=assignments, log=lambda *_: None)
    return dest
