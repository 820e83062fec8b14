"""Helpers shared by several test files (fixtures live in conftest.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Debian's chromium package (make test installs it), driven by Playwright
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # Playwright gives every launch a fresh, temporary user-data-dir


def run_build(source: Path = REPO) -> subprocess.CompletedProcess:
    """`make book` for the book in `source` (the strict flags are the script's)."""
    return subprocess.run(
        [sys.executable, "-m", "tools.build_book", str(source)],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )


def log_tail(result: subprocess.CompletedProcess, lines: int = 60) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-lines:])


# ---------------------------------------------------------------------------- grading
GRADING_DEMO = REPO / "tests" / "fixtures" / "grading_demo"
# the grader with the demo registry (the course's assignments plus the small 00_demo)
GRADING_ENV = {
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    "PYTHONPATH": os.pathsep.join([str(GRADING_DEMO), str(REPO)]),
    "COURSE_EXERCISES_MODULE": "demo_registry",
}


def grading_env(**extra: str) -> dict:
    """This process's environment with ``GRADING_ENV`` and ``extra`` on top."""
    return {**os.environ, **GRADING_ENV, **extra}


def run_grade(root: Path, *args: str, env: dict | None = None,
              timeout: int = 1200) -> subprocess.CompletedProcess:
    """``python -m grader grade --root ROOT -q ARGS...`` with the demo registry."""
    return subprocess.run([sys.executable, "-m", "grader", "grade", "--root", str(root), "-q",
                           *args], cwd=REPO, env=env or grading_env(), capture_output=True,
                          text=True, timeout=timeout)


def read_grades(root: Path) -> dict:
    """grader/grades.csv as {(student, assignment): row}."""
    import csv

    with open(root / "grader" / "grades.csv") as fh:
        return {(r["student"], r["assignment"]): r for r in csv.DictReader(fh)}
