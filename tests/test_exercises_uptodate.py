"""exercises/ (committed) is exactly what `python -m grader release` generates from solutions/.

Regenerates into a temporary folder and compares what a student sees: the file set,
and per notebook the cells' types, sources and nbgrader metadata (not volatile fields
such as execution counts or outputs). If this fails: run `python -m grader release`.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from grader import nbapi, release

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENTS = nbapi.source_assignments(REPO)


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() and ".ipynb_checkpoints" not in p.parts and "__pycache__" not in p.parts}


def _visible(path: Path) -> list:
    nb = nbformat.read(path, as_version=4)
    return [(c.cell_type, c.source, c.get("metadata", {}).get("nbgrader")) for c in nb.cells]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    if ASSIGNMENTS:
        release.release(REPO, out, log=lambda *_: None)
    return out


def test_every_exercise_has_a_source():
    released = sorted(p.name for p in (REPO / "exercises").iterdir() if p.is_dir()) \
        if (REPO / "exercises").is_dir() else []
    assert set(released) <= set(ASSIGNMENTS), "exercises/ without solutions/: " + str(
        sorted(set(released) - set(ASSIGNMENTS)))


@pytest.mark.parametrize("assignment", ASSIGNMENTS or [pytest.param("none", marks=pytest.mark.skip(
    reason="no solutions/<a>/<a>.ipynb yet"))])
def test_exercises_match_generation(regenerated, assignment):
    committed = REPO / "exercises" / assignment
    fresh = regenerated / assignment
    assert committed.is_dir(), f"exercises/{assignment} missing: run python -m grader release"
    assert _files(committed) == _files(fresh), "run python -m grader release"
    for rel in sorted(_files(fresh)):
        if rel.endswith(".ipynb"):
            assert _visible(committed / rel) == _visible(fresh / rel), (
                f"exercises/{assignment}/{rel} is stale: run python -m grader release")
        else:
            assert (committed / rel).read_bytes() == (fresh / rel).read_bytes(), rel


def test_student_notebooks_hold_no_solutions_or_hidden_tests():
    for a in ASSIGNMENTS:
        path = REPO / "exercises" / a / f"{a}.ipynb"
        if not path.exists():
            continue
        text = path.read_text()
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "hidden=True"):
            assert marker not in text, f"{path}: {marker}"
