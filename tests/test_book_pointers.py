"""Every "Read:" pointer of the grader (exercises and catalogued mistakes) is a link to
a labelled heading that exists in the built book.

Uses a built book: $COURSE_BOOK_HTML if set, else _build/html when it is newer than the
book's sources, else builds one into a temporary copy (tools/build_book.py, reusing the
execution cache)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader import exercises as reg

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("_config.yml", "_toc.yml", "book", "course_lib")


def _newest_source() -> float:
    files = [REPO / "_config.yml", REPO / "_toc.yml", *(REPO / "book").glob("*.md")]
    return max(f.stat().st_mtime for f in files)


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    if os.environ.get("COURSE_BOOK_HTML"):
        return Path(os.environ["COURSE_BOOK_HTML"])
    built = REPO / "_build" / "html"
    if (built / "index.html").is_file() and built.stat().st_mtime >= _newest_source():
        return built
    copy = tmp_path_factory.mktemp("book")
    for name in SOURCES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, copy / name)
    cache = REPO / "_build" / ".jupyter_cache"
    if cache.is_dir():
        shutil.copytree(cache, copy / "_build" / ".jupyter_cache")
    subprocess.run([sys.executable, "-m", "tools.build_book", str(copy)], cwd=REPO,
                   check=True, capture_output=True)
    return copy / "_build" / "html"


def pointers() -> set:
    found = set()
    for ex in reg.EXERCISES.values():
        found.add(ex.section)
        found.update(m.section for m in ex.mistakes)
    return found


def test_every_pointer_is_a_labelled_heading_of_the_built_book(html):
    missing = []
    for read in sorted(pointers(), key=str):
        page = html / "book" / f"{read.page}.html"
        if not page.is_file() or f'id="{read.label}"' not in page.read_text():
            missing.append(f"{read.page}.html#{read.label}")
    assert not missing, f"pointers to anchors the built book does not have: {missing}"


def test_pointers_are_links_with_the_heading_text():
    for read in pointers():
        assert f"book/{read.page}.html#{read.label}" in read.url
        assert read.markdown().endswith(f"]({read.url})")
        assert reg.heading(read.page, read.label)  # the label stands above a heading
