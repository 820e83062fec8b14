"""Every "Read:" pointer of the grader (exercises and catalogued mistakes) is a link to
a labelled heading that exists in the built book.

Uses a built book: $COURSE_BOOK_HTML if set, else the one the session builds into a
temporary copy (conftest.py), shared with tests/test_book.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from grader import exercises as reg


@pytest.fixture(scope="module")
def html(request) -> Path:
    """$COURSE_BOOK_HTML if set, else the book built once per session (conftest.py)."""
    if os.environ.get("COURSE_BOOK_HTML"):
        return Path(os.environ["COURSE_BOOK_HTML"])
    return request.getfixturevalue("built_book")


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
