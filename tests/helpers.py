"""Helpers shared by several test files (fixtures live in conftest.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# the two-function demo assignment the grading tests grade (its registry is importable
# by the grader when it runs with DEMO_ENV)
DEMO = REPO / "tests" / "fixtures" / "grading_demo"
DEMO_ENV = {
    **os.environ,
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    "PYTHONPATH": os.pathsep.join([str(DEMO), str(REPO)]),
    "COURSE_EXERCISES_MODULE": "demo_registry",
}
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


def run_grade(root: Path, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m grader grade` on the course in ``root`` (demo registry, no progress
    bar); ``env`` adds variables, e.g. COURSE_DB_URL."""
    return subprocess.run([sys.executable, "-m", "grader", "grade", "--root", str(root), "-q",
                           *args], cwd=REPO, env={**DEMO_ENV, **(env or {})},
                          capture_output=True, text=True, timeout=1200)
