"""``python -m grader release``: generate the student notebooks exercises/<a>/ from
solutions/<a>/ with ``nbgrader generate_assignment`` (solutions and hidden tests removed).

Never touches grading state: nbgrader's pass writes a gradebook of the assignments and no
student, which is either thrown away or, when every assignment is released to exercises/,
kept as the workers' template gradebook (grader/template.db: the next `grade` need not
make it)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import gradebook, nbapi, pipeline


def release(root=None, release_dir=None, assignments=None, log=print) -> list[str]:
    root = Path(root or nbapi.REPO_ROOT).resolve()
    every = nbapi.source_assignments(root)
    assignments = assignments or every
    if not assignments:
        raise SystemExit(f"no source notebooks solutions/<a>/<a>.ipynb in {root}")
    try:
        if release_dir is None and sorted(assignments) == every:
            pipeline.template_gradebook(root, every, release=True, log=log)
            return assignments
        with tempfile.TemporaryDirectory(prefix="bptt-release-db-") as tmp:
            db_url = "sqlite:///" + os.path.join(tmp, "gb.db")
            gradebook.new_gradebook(db_url)
            folders = {"db_url": db_url}
            if release_dir:
                folders["release_directory"] = os.path.abspath(release_dir)
            pipeline.generate(root, assignments, folders, log=log)
    except pipeline.GradingError as exc:
        raise SystemExit(str(exc)) from None
    return assignments
