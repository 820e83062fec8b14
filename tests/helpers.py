"""Helpers shared by several test files (fixtures live in conftest.py)."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "tests" / "fixtures" / "grading_demo"  # the small demo assignment 00_demo
# Debian's chromium package (make test installs it), driven by Playwright; None if missing
CHROMIUM = shutil.which("chromium")
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


# --------------------------------------------------------------------------- grading

def grader_env(*paths: Path, registry: str | None = None, **extra: str) -> dict:
    """The environment of a `python -m grader` subprocess: this venv's tools on PATH
    (nbgrader needs `alembic`), ``paths`` and the repository importable, the exercise
    registry module ``registry`` (None: the course's own, COURSE_EXERCISES_MODULE unset)
    and ``extra`` variables."""
    env = {**os.environ,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join([*map(str, paths), str(REPO)]), **extra}
    env.pop("COURSE_EXERCISES_MODULE", None)
    if registry:
        env["COURSE_EXERCISES_MODULE"] = registry
    return env


DEMO_ENV = grader_env(DEMO, registry="demo_registry")


def run_grade(root: Path, *args: str, env: dict = DEMO_ENV,
              cwd: Path = REPO) -> subprocess.CompletedProcess:
    """`python -m grader grade --root ROOT -q ARGS` (the demo registry unless ``env``),
    run in ``cwd``: `-m` imports the grader found there before any on PYTHONPATH."""
    return subprocess.run([sys.executable, "-m", "grader", "grade", "--root", str(root), "-q",
                           *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=1200)


def read_grades(root: Path) -> dict[tuple[str, str], dict]:
    """grader/grades.csv as {(student, assignment): row}."""
    with open(root / "grader" / "grades.csv", newline="") as fh:
        return {(r["student"], r["assignment"]): r for r in csv.DictReader(fh)}


class _Text(HTMLParser):
    """The text nodes of a page, as a browser joins them (character references decoded)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0  # inside <style> or <script>: not text a reader sees

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script"):
            self.skip += 1

    def handle_endtag(self, tag):
        if tag in ("style", "script") and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def page_text(path: Path) -> str:
    """A page's text as a browser shows it. Tags are parsed away, not replaced by spaces:
    syntax highlighting wraps each token, and spaces would turn ``hidden=True`` into
    ``hidden = True``, which a check for the first could never find."""
    parser = _Text()
    parser.feed(Path(path).read_text())
    parser.close()
    return "".join(parser.parts)


def feedback_page(root: Path, student: str, assignment: str) -> Path:
    return root / "grader" / "feedback" / student / assignment / f"{assignment}.html"


def hidden_calls(root: Path, student: str, assignment: str) -> list[str]:
    """The hidden-test lines of the autograded notebook (it keeps them; feedback must not)."""
    import nbformat

    nb = nbformat.read(root / "grader" / "autograded" / student / assignment /
                       f"{assignment}.ipynb", as_version=4)
    return [line.strip() for cell in nb.cells if cell.cell_type == "code"
            for line in cell.source.splitlines() if "hidden=True" in line]


def demo_registry():
    """The demo's exercise registry module (tests/fixtures/grading_demo/demo_registry.py),
    imported without leaving its folder on sys.path or setting COURSE_EXERCISES_MODULE."""
    sys.path.insert(0, str(DEMO))
    try:
        import demo_registry as module
    finally:
        sys.path.remove(str(DEMO))
    return module
