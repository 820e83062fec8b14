"""Fixtures shared by several test files: the book is built once per session, one
Chromium and one PostgreSQL server serve the whole session.

`make test` runs the test files in one process more than there are cores (pytest-xdist,
``--dist loadfile``): each file runs whole on one worker, so its module fixtures (a
graded class) are made once; the built book is used by tests/test_book.py alone, so it
is built once."""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from helpers import CHROMIUM, CHROMIUM_FLAGS, REPO, log_tail, run_build
from postgres_server import PostgresServer


# The files whose tests take longest, longest first (measured with --durations): the
# workers start them first and so finish at about the same time. Other files follow
# in their usual order.
SLOW_FIRST = ("test_grading_cluster", "test_adversarial_corpus", "test_book",
              "test_grading_pipeline", "test_grading_runs", "test_gradebook_postgresql",
              "test_feedback_inert", "test_selfcheck_agrees", "test_grading_written",
              "test_adversarial_sandbox", "test_fairness")


def pytest_collection_modifyitems(config, items):
    """The slow files first (see SLOW_FIRST)."""
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: file order kept


def pytest_sessionfinish(session):
    """Runs the tests kill on purpose (the grader, Dask workers) cannot remove their
    private folders; the grader's next run would, and so does the end of the tests."""
    from grader.sandbox import rundir

    rundir.remove_abandoned()


@pytest.fixture
def short_tmp_path():
    """A new empty folder with a short path, removed after the test: a temporary folder
    for the grader (TMPDIR), whose kernels' socket paths must fit in 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="bptt-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def book_copy(tmp_path_factory) -> Path:
    """A copy of the book's sources in a temporary folder (the repository's own _build/
    is neither used nor touched)."""
    sys.path.insert(0, str(REPO))
    try:
        from tools.build_book import copy_book_sources
    finally:
        sys.path.remove(str(REPO))
    return copy_book_sources(tmp_path_factory.mktemp("book"), REPO)


@pytest.fixture(scope="session")
def built_book(book_copy) -> Path:
    """The book built from ``book_copy`` exactly as `make book` builds it."""
    result = run_build(book_copy)
    assert result.returncode == 0, f"`make book` failed:\n{log_tail(result)}"
    return book_copy / "_build" / "html"


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session: Playwright's sync API cannot start
    a second instance in the same thread while one is open."""
    if CHROMIUM is None:
        pytest.fail("no chromium on PATH: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def postgresql_url():
    """A callable: each call creates a new empty database on one PostgreSQL server
    started for the session (tests/postgres_server.py) and returns its SQLAlchemy URL
    (``postgresql+psycopg://...``, with a password). The server stops at session end."""
    try:
        server = PostgresServer()
        server.start()
    except RuntimeError as exc:
        pytest.fail(f"no PostgreSQL server for the tests: {exc}")
    try:
        yield server.new_database
    finally:
        server.stop()
