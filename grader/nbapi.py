"""nbgrader's Python API, configured from the course root's nbgrader_config.py."""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT_IDS = ("01_backprop", "02_softmax", "03_bptt", "04_truncation", "05_vanishing",
                  "06_language_model")


def prepare_environment() -> None:
    """nbgrader runs ``alembic`` for a fresh gradebook: the venv's bin must be on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if venv_bin not in path.split(os.pathsep):
        os.environ["PATH"] = venv_bin + os.pathsep + path
    os.environ.setdefault("PYTHONHASHSEED", "0")
    os.environ.setdefault("MPLBACKEND", "Agg")


def load_config(root: str | os.PathLike, overrides=None):
    from traitlets.config.loader import Config, PyFileConfigLoader

    root = os.fspath(root)
    path = os.path.join(root, "nbgrader_config.py")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no nbgrader_config.py in the course root {root}")
    cfg = PyFileConfigLoader("nbgrader_config.py", path=root).load_config()
    cfg.CourseDirectory.root = os.path.abspath(root)
    if overrides:
        cfg.merge(Config(overrides))
    return cfg


def make_api(root, overrides=None):
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    prepare_environment()
    cfg = load_config(root, overrides)
    coursedir = CourseDirectory(config=cfg)
    return NbGraderAPI(coursedir=coursedir, config=cfg)


def source_assignments(root) -> list[str]:
    """Assignments that have a source notebook solutions/<a>/<a>.ipynb."""
    src = Path(root) / "solutions"
    if not src.is_dir():
        return []
    return sorted(p.name for p in src.iterdir()
                  if p.is_dir() and (p / f"{p.name}.ipynb").is_file())
