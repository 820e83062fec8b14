"""The book: it builds strictly, reads well in a real browser offline, never shows solutions.

The book is built once per session exactly as `make book` builds it (tools/build_book.py),
served from 127.0.0.1 by a thread of this process, and every page of _toc.yml is opened in
headless Chromium (Debian's package, driven by Playwright). Two scratch books in tmp_path
check that the build really fails on a failing cell and on a Sphinx warning.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
HTML = REPO / "_build" / "html"
ASSIGNMENTS = ("01_backprop", "02_softmax", "03_bptt", "04_truncation", "05_vanishing")
SOLUTION_MARKERS = (b"BEGIN SOLUTION", b"BEGIN HIDDEN TESTS")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # Playwright gives every launch a fresh, temporary user-data-dir
PAGE_TIMEOUT_MS = 60_000


def toc_documents(toc_file: Path = REPO / "_toc.yml") -> list[str]:
    """Every document of the table of contents (root first), e.g. 'book/03_bptt'."""
    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    yield str(Path(node[key]).with_suffix(""))
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    return list(dict.fromkeys(walk(yaml.safe_load(toc_file.read_text()))))


def run_build(source: Path = REPO) -> subprocess.CompletedProcess:
    """`make book` for the book in `source` (the strict flags are the script's)."""
    return subprocess.run(
        [sys.executable, "-m", "tools.build_book", str(source)],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )


def log_tail(result: subprocess.CompletedProcess, lines: int = 60) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-lines:])


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def built_book() -> Path:
    result = run_build()
    assert result.returncode == 0, f"`make book` failed:\n{log_tail(result)}"
    return HTML


@pytest.fixture(scope="session")
def server(built_book):
    """Serve _build/html on 127.0.0.1 at a free port; yields the base URL."""
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


# --------------------------------------------------------------------------- browser

MATH_REPORT_JS = """async () => {
    if (!document.querySelector('.math')) return null;
    if (!window.MathJax || !MathJax.startup) return {loaded: false};
    await MathJax.startup.promise;
    const maths = Array.from(document.querySelectorAll('.math'));
    return {
        loaded: true,
        elements: maths.length,
        unrendered: maths.filter(e => !e.querySelector('mjx-container'))
                         .map(e => e.textContent.trim().slice(0, 80)),
        errors: Array.from(document.querySelectorAll('mjx-merror'))
                     .map(e => e.getAttribute('data-mjx-error') || e.textContent),
    };
}"""

# The page's text outside code and rendered math: what a raw `$$` would be left in.
PROSE_TEXT_JS = """() => {
    const main = (document.querySelector('main') || document.body).cloneNode(true);
    main.querySelectorAll('pre, code, script, style, mjx-container').forEach(e => e.remove());
    return main.textContent;
}"""

IMAGES_JS = """async () => {
    const images = Array.from(document.images);
    images.forEach(image => { image.loading = 'eager'; });
    await Promise.all(images.map(image => image.complete ? null : new Promise(done => {
        image.addEventListener('load', done);
        image.addEventListener('error', done);
        setTimeout(done, 15000);
    })));
    return images.map(image => ({src: image.currentSrc || image.src, width: image.naturalWidth}));
}"""

DOWNLOADS_JS = """() => Array.from(document.querySelectorAll('a[href*="_downloads/"]'))
                        .map(a => a.href).filter(href => href.endsWith('.ipynb'))"""


def fetch_notebook(url: str) -> nbformat.NotebookNode:
    with urllib.request.urlopen(url, timeout=30) as response:
        notebook = nbformat.reads(response.read().decode("utf-8"), as_version=4)
    nbformat.validate(notebook)
    return notebook


# Every page of the table of contents, and the search page with a query (its own script).
PAGES = [f"{document}.html" for document in toc_documents()] + ["search.html?q=gradient"]


@pytest.mark.parametrize("page_path", PAGES)
def test_page_renders_offline_in_chromium(page_path, server, browser):
    url = f"{server}/{page_path}"
    problems: list[str] = []
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)

    def only_local(route):
        if route.request.url.startswith((server + "/", "data:", "blob:")):
            route.continue_()
        else:  # the book must not need the network (and must not call home)
            problems.append(f"request to outside the book: {route.request.url}")
            route.abort()

    page.route("**/*", only_local)
    page.on("requestfailed", lambda request: problems.append(
        f"failed request: {request.url} ({request.failure})"))
    page.on("response", lambda response: response.status >= 400 and problems.append(
        f"HTTP {response.status}: {response.url}"))
    page.on("console", lambda message: message.type == "error" and problems.append(
        f"console error: {message.text}"))
    page.on("pageerror", lambda error: problems.append(f"JavaScript error: {error}"))

    try:
        response = page.goto(url, wait_until="load")
        assert response is not None and response.ok, f"{url} did not load"

        math = page.evaluate(MATH_REPORT_JS)
        if math is not None:  # the page has math
            if not math["loaded"]:
                problems.append("the page has math but MathJax did not load")
            else:
                problems += [f"math not rendered: {text!r}" for text in math["unrendered"]]
                problems += [f"MathJax TeX error: {text!r}" for text in math["errors"]]
        if "$$" in page.evaluate(PROSE_TEXT_JS):
            problems.append("raw `$$` left in the text (math that was not parsed)")

        for image in page.evaluate(IMAGES_JS):
            if image["width"] == 0:
                problems.append(f"image did not load: {image['src']}")

        for href in page.evaluate(DOWNLOADS_JS):
            try:
                fetch_notebook(href)
            except Exception as error:  # noqa: BLE001 - report every bad link, not just the first
                problems.append(f"download link is not a valid notebook: {href}: {error!r}")

        page.wait_for_load_state("networkidle")
    finally:
        context.close()

    assert not problems, f"{page_path}:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------- static checks

def test_every_toc_page_was_built(built_book):
    missing = [doc for doc in toc_documents() if not (built_book / f"{doc}.html").is_file()]
    assert not missing, f"pages of _toc.yml missing from _build/html: {missing}"
    assert (built_book / "index.html").is_file()


def test_every_page_in_book_folder_is_in_the_toc():
    """only_build_toc_files would silently leave out a page missing from _toc.yml."""
    listed = set(toc_documents())
    pages = {path.relative_to(REPO).with_suffix("").as_posix()
             for path in (REPO / "book").glob("*") if path.suffix in {".md", ".ipynb"}}
    assert pages <= listed, f"pages in book/ missing from _toc.yml: {sorted(pages - listed)}"


def test_every_assignment_has_a_download_link_to_its_student_notebook(built_book):
    """Each exercises/<a>/<a>.ipynb is offered for download, byte for byte."""
    downloads = {path.name: path for path in (built_book / "_downloads").rglob("*.ipynb")}
    for assignment in ASSIGNMENTS:
        name = f"{assignment}.ipynb"
        assert name in downloads, f"no download link to exercises/{assignment}/{name} in the book"
        source = REPO / "exercises" / assignment / name
        assert downloads[name].read_bytes() == source.read_bytes(), (
            f"the book offers a stale copy of {source.relative_to(REPO)}: rebuild the book")


def test_no_solution_or_hidden_test_is_published(built_book):
    """The book is built from book/ only: nothing of solutions/ may reach _build/html."""
    leaks = []
    for path in built_book.rglob("*"):
        if path.is_file() and path.suffix not in {".png", ".jpg", ".svg", ".woff", ".woff2"}:
            content = path.read_bytes()
            leaks += [f"{path.relative_to(built_book)}: {marker.decode()}"
                      for marker in SOLUTION_MARKERS if marker in content]
    assert not leaks, "solution markers in the published book:\n  " + "\n  ".join(leaks)
    assert not list(built_book.rglob("solutions")), "solutions/ was rendered"


def test_every_chapter_runs_in_under_a_minute(built_book):
    """The issue's promise to students, measured by jupyter-cache when the chapter last ran."""
    from jupyter_cache import get_cache

    latest = {}  # the newest execution of each notebook (older versions stay in the cache)
    for record in get_cache(REPO / "_build" / ".jupyter_cache").list_cache_records():
        if record.uri not in latest or record.created > latest[record.uri].created:
            latest[record.uri] = record
    slow = {Path(uri).name: round(record.data["execution_seconds"], 1)
            for uri, record in latest.items() if record.data["execution_seconds"] > 60}
    assert latest, "no executed notebook in _build/.jupyter_cache"
    assert not slow, f"chapters taking over a minute to run (seconds): {slow}"


def test_rebuild_with_nothing_changed_uses_the_cache(built_book):
    result = run_build()
    assert result.returncode == 0, log_tail(result)
    assert "Executing notebook" not in result.stdout, "a chapter ran again with nothing changed"


# --------------------------------------------------------------------------- strictness

def scratch_book(tmp_path: Path, page: str) -> Path:
    """A one-page book using the course's own _config.yml."""
    (tmp_path / "_config.yml").write_text((REPO / "_config.yml").read_text())
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: index\n")
    front_matter = "---\nfile_format: mystnb\nkernelspec:\n  name: python3\n  display_name: Python 3\n---\n"
    (tmp_path / "index.md").write_text(front_matter + page)
    return tmp_path


def test_build_fails_on_a_failing_cell(tmp_path):
    book = scratch_book(tmp_path, "# A page\n\n```{code-cell} ipython3\n"
                                  "raise RuntimeError('deliberate failure in a cell')\n```\n")
    result = run_build(book)
    assert result.returncode != 0, "a cell raised but the build succeeded"
    assert "deliberate failure in a cell" in result.stdout, log_tail(result)


def test_build_fails_on_a_sphinx_warning_every_time(tmp_path):
    book = scratch_book(tmp_path, "# A page\n\nSee {ref}`a-label-that-does-not-exist`.\n")
    first, second = run_build(book), run_build(book)
    for result in (first, second):  # the second run must not hide the unchanged page's warning
        assert result.returncode != 0, f"a warning did not fail the build:\n{log_tail(result)}"
        assert "a-label-that-does-not-exist" in result.stdout


# --------------------------------------------------------------------------- build script

def load_build_script():
    sys.path.insert(0, str(REPO))
    try:
        from tools import build_book
    finally:
        sys.path.remove(str(REPO))
    return build_book


def test_cache_is_cleared_when_course_lib_changes(tmp_path):
    """Cached outputs were computed by course_lib: a change there must re-run the chapters."""
    build_book = load_build_script()
    (tmp_path / "course_lib").mkdir()
    module = tmp_path / "course_lib" / "rnn.py"
    module.write_text("SCALE = 1.0\n")
    build_dir = tmp_path / "_build"
    (build_dir / ".jupyter_cache").mkdir(parents=True)

    key = build_book.dependencies_key(tmp_path)
    assert build_book.invalidate_stale_cache(build_dir, key)  # no key recorded yet: unknown
    (build_dir / ".jupyter_cache").mkdir()
    assert not build_book.invalidate_stale_cache(build_dir, key)  # same sources: kept
    assert (build_dir / ".jupyter_cache").is_dir()

    (tmp_path / "course_lib" / "__pycache__").mkdir()
    (tmp_path / "course_lib" / "__pycache__" / "rnn.pyc").write_bytes(b"\0")
    assert build_book.dependencies_key(tmp_path) == key  # bytecode is not a source

    module.write_text("SCALE = 2.0\n")
    assert build_book.invalidate_stale_cache(build_dir, build_book.dependencies_key(tmp_path))
    assert not (build_dir / ".jupyter_cache").exists()
