"""``python -m grader release``: generate the student notebooks exercises/<a>/ from
solutions/<a>/ with ``nbgrader generate_assignment`` (solutions and hidden tests removed).

Runs against a throw-away gradebook, so releasing never touches grading state."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import gradebook, nbapi


def release(root=None, release_dir=None, assignments=None, log=print) -> list[str]:
    root = Path(root or nbapi.REPO_ROOT).resolve()
    assignments = assignments or nbapi.source_assignments(root)
    if not assignments:
        raise SystemExit(f"no source notebooks solutions/<a>/<a>.ipynb in {root}")
    with tempfile.TemporaryDirectory(prefix="bptt-release-db-") as tmp:
        db_url = "sqlite:///" + os.path.join(tmp, "gb.db")
        gradebook.new_gradebook(db_url)
        overrides = {"CourseDirectory": {"db_url": db_url}}
        if release_dir:
            overrides["CourseDirectory"]["release_directory"] = os.path.abspath(release_dir)
        api = nbapi.make_api(root, overrides)
        for a in assignments:
            result = api.generate_assignment(a, force=True, create=True)
            if not result.get("success"):
                raise SystemExit(f"generate_assignment {a} failed:\n"
                                 f"{result.get('log', '')}{result.get('error', '')}")
            log(f"released {a} -> {Path(api.coursedir.release_directory) / a}")
    return assignments
