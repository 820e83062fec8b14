"""The book: it builds strictly, reads well in a real browser offline, never shows solutions.

The book is built once per session exactly as `make book` builds it (tools/build_book.py),
from a copy of its sources in a temporary folder (the repository's own _build/ is neither
used nor touched), served from 127.0.0.1 by a thread of this process, and every page of
_toc.yml is opened once in headless Chromium (Debian's package, driven by Playwright), at
1280 px and then narrowed to 390 px (``visit``). Two
scratch books in tmp_path check that the build really fails on a failing cell and on a
Sphinx warning.

Layout promises checked in the browser: numbered chapters with per-chapter equation
numbers, no display equation wider than its column at 1280 px, no page that scrolls
sideways at 390 px. Checked in the HTML: every figure has a caption and a real alt text,
no internal "seed" label of a source text is shown, every citation resolves. Every
"Read:" pointer of the grader (exercises and catalogued mistakes) links to a labelled
heading of the built book.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import sys
import threading
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
import yaml
from helpers import log_tail, run_build

from grader import exercises as reg
from grader.nbapi import ASSIGNMENT_IDS as ASSIGNMENTS

REPO = Path(__file__).resolve().parent.parent
SOLUTION_MARKERS = (b"BEGIN SOLUTION", b"BEGIN HIDDEN TESTS")

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


# --------------------------------------------------------------------------- fixtures

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


class NetworkWatch:
    """The page's requests, from Playwright's events: settled once every request has
    been answered and none started or ended for ``QUIET`` seconds (what Playwright's own
    "networkidle" means; that event sometimes never came under load, with nothing
    unanswered)."""

    QUIET = 0.5

    def __init__(self, page):
        self.page, self.pending, self.last = page, {}, time.monotonic()
        page.on("request", self._started)
        page.on("requestfinished", self._ended)
        page.on("requestfailed", self._ended)

    def _started(self, request):
        self.pending[request], self.last = request.url, time.monotonic()

    def _ended(self, request):
        self.pending.pop(request, None)
        self.last = time.monotonic()

    def settled(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pending and time.monotonic() - self.last >= self.QUIET:
                return True
            self.page.wait_for_timeout(100)  # lets Playwright deliver events and routes
        return False

    def unanswered(self) -> list[str]:
        return sorted(self.pending.values())


# Every page of the table of contents, and the search page with a query (its own script).
PAGES = [f"{document}.html" for document in toc_documents()] + ["search.html?q=gradient"]


@pytest.fixture(scope="session")
def visit(server, browser):
    """A callable: what the browser checks read on a page of the book (``page_path``,
    relative to the site), from one visit per page, memoized. The page is opened at
    1280 x 900 px with every request watched: ``problems`` (requests outside the book,
    failed requests, console and JavaScript errors, math not rendered, raw ``$$``,
    images or downloads that do not load, a network that never goes quiet), ``numbers``
    (chapter and equation numbers), ``wide`` (display math wider than its column); then
    the same page is narrowed to 390 x 844 px, as a phone shows it: ``sideways`` (how
    far it scrolls sideways, and what is too wide)."""
    seen: dict = {}

    def read(page_path: str) -> dict:
        if page_path not in seen:
            seen[page_path] = _visit(browser, f"{server}/{page_path}", server)
        return seen[page_path]

    return read


def _visit(browser, url: str, server: str) -> dict:
    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
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
    network = NetworkWatch(page)

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

        if not network.settled(PAGE_TIMEOUT_MS / 1000):
            problems.append(f"the page's network never went quiet; unanswered requests: "
                            f"{network.unanswered()}")
        found = {"problems": problems, "numbers": page.evaluate(CHAPTER_NUMBERS_JS),
                 "wide": page.evaluate(WIDE_MATH_JS)}
        page.set_viewport_size({"width": 390, "height": 844})
        page.evaluate("() => new Promise(done => requestAnimationFrame(() => "
                      "requestAnimationFrame(done)))")  # laid out again at the new size
        found["sideways"] = page.evaluate(SIDEWAYS_SCROLL_JS)
        return found
    finally:
        context.close()


@pytest.mark.parametrize("page_path", PAGES)
def test_page_renders_offline_in_chromium(page_path, visit):
    problems = visit(page_path)["problems"]
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
    """The promise to students, from this build's own record (the session's build ran
    every chapter): the CPU time of each chapter's kernel, which a busy machine does not
    inflate the way it inflates wall time."""
    runs = json.loads((built_book.parent / "chapter_runs.json").read_text())
    missing = [d for d in numbered_chapters() if f"{d}.md" not in runs]
    assert not missing, f"chapters this build did not run: {missing} (ran: {sorted(runs)})"
    slow = {name: run["cpu_seconds"] for name, run in runs.items() if run["cpu_seconds"] > 60}
    assert not slow, f"chapters needing over a minute of CPU time (seconds): {slow}"
    print("\nCPU seconds per chapter: " + ", ".join(
        f"{Path(name).stem} {run['cpu_seconds']:.0f}" for name, run in sorted(runs.items())))


def test_rebuild_with_nothing_changed_uses_the_cache(built_book, book_copy):
    record = built_book.parent / "chapter_runs.json"
    first = record.read_text()
    try:
        result = run_build(book_copy)
        assert result.returncode == 0, log_tail(result)
        assert "Executing notebook" not in result.stdout, "Sphinx ran a chapter again"
        assert json.loads(record.read_text()) == {}, "a chapter ran again with nothing changed"
    finally:
        record.write_text(first)  # the first build's record, for the tests that read it


# --------------------------------------------------------------------------- strictness

def scratch_book(tmp_path: Path, page: str) -> Path:
    """A one-page book using the course's own _config.yml and what it names (the
    bibliography, the static folder), so that only the page's own fault can fail it."""
    (tmp_path / "_config.yml").write_text((REPO / "_config.yml").read_text())
    (tmp_path / "references.bib").write_text((REPO / "references.bib").read_text())
    shutil.copytree(REPO / "book" / "static", tmp_path / "book" / "static")
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


# --------------------------------------------------------------------------- layout promises

def numbered_chapters(toc_file: Path = REPO / "_toc.yml") -> list[str]:
    """Documents of the numbered parts of _toc.yml, in reading order ('book/03_bptt')."""
    toc = yaml.safe_load(toc_file.read_text())
    return [str(Path(chapter["file"]).with_suffix(""))
            for part in toc.get("parts", []) if part.get("numbered")
            for chapter in part["chapters"]]


CHAPTER_NUMBERS_JS = """() => {
    const heading = document.querySelector('article h1');
    const number = heading && heading.querySelector('.section-number');
    return {
        heading: number ? number.textContent.trim() : null,
        equations: Array.from(document.querySelectorAll('div.math .eqno'))
                        .map(e => e.firstChild ? e.firstChild.textContent.trim() : ''),
    };
}"""

# Display math wider than the column it sits in (the equation number included).
WIDE_MATH_JS = """() => Array.from(document.querySelectorAll('div.math')).map(block => {
    const math = block.querySelector('mjx-container mjx-math');
    const number = block.querySelector('.eqno');
    const needed = (math ? math.getBoundingClientRect().width : 0)
                 + (number ? number.getBoundingClientRect().width : 0);
    return {id: block.id, text: block.textContent.trim().slice(0, 70),
            needed: Math.ceil(needed), available: block.clientWidth};
}).filter(m => m.needed > m.available + 1)"""

SIDEWAYS_SCROLL_JS = """() => ({
    page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    culprits: Array.from(document.querySelectorAll('main *'))
        .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1
                     && !e.closest('pre, .highlight, table, .pst-scrollable-table-container, '
                                   + 'mjx-container, .math, .cell_output, .output'))
        .slice(0, 5).map(e => e.tagName + ': ' + e.textContent.trim().slice(0, 60)),
})"""


def test_chapters_are_numbered_with_per_chapter_equation_numbers(visit):
    chapters = numbered_chapters()
    assert len(chapters) >= 5, f"_toc.yml numbers too few chapters: {chapters}"
    problems = []
    for number, document in enumerate(chapters, start=1):
        found = visit(f"{document}.html")["numbers"]
        if found["heading"] != f"{number}.":
            problems.append(f"{document}: heading number {found['heading']!r}, "
                            f"expected '{number}.'")
        wrong = [e for e in found["equations"] if not re.fullmatch(rf"\({number}\.\d+\)", e)]
        if wrong:
            problems.append(f"{document}: equation numbers not of chapter {number}: {wrong[:5]}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("document", toc_documents())
def test_no_display_math_wider_than_its_column_at_1280px(document, visit):
    wide = visit(f"{document}.html")["wide"]
    assert not wide, f"{document}: display math wider than the text column:\n  " + \
        "\n  ".join(f"{m['id'] or m['text']!r}: {m['needed']} px in {m['available']} px"
                    for m in wide)


@pytest.mark.parametrize("document", toc_documents())
def test_no_page_scrolls_sideways_at_390px(document, visit):
    found = visit(f"{document}.html")["sideways"]
    assert found["page"] <= 0, (
        f"{document} scrolls sideways by {found['page']} px on a 390 px screen; "
        f"too wide: {found['culprits']}")


FILE_NAME = re.compile(r"(^|/)[\w.-]+\.(png|jpe?g|svg|gif|webp)$", re.IGNORECASE)


def page_soup(built_book: Path, document: str):
    from bs4 import BeautifulSoup

    return BeautifulSoup((built_book / f"{document}.html").read_text(), "html.parser")


def figure_problems(soup) -> list[str]:
    """Images in the page's content without a caption or with a file name for alt text."""
    problems = []
    for image in soup.select("main img"):
        source = image.get("src", "")
        alt = (image.get("alt") or "").strip()
        figure = image.find_parent("figure")
        caption = figure.find("figcaption") if figure else None
        if caption is None or not caption.get_text(strip=True):
            problems.append(f"{source}: no caption")
        if not alt or FILE_NAME.search(alt) or alt == Path(source).name:
            problems.append(f"{source}: alt text {alt!r} is not a description")
    return problems


def test_every_figure_has_a_caption_and_a_real_alt_text(built_book):
    soups = {document: page_soup(built_book, document) for document in toc_documents()}
    problems = {document: figure_problems(soup) for document, soup in soups.items()}
    problems = {document: found for document, found in problems.items() if found}
    assert not problems, "figures without caption or alt text:\n" + "\n".join(
        f"  {document}: {found}" for document, found in problems.items())
    figures = sum(len(soup.select("main figure img")) for soup in soups.values())
    assert figures >= 10, f"only {figures} figures found: is the selector still right?"


SOURCE_LABEL = re.compile(r"seed\s*0{2}\d", re.IGNORECASE)


def test_no_internal_source_label_in_the_built_html(built_book):
    """Sources are cited by title; the course's internal names for them never show."""
    hits = []
    for path in built_book.rglob("*.html"):
        text = path.read_text(errors="replace")
        hits += [f"{path.relative_to(built_book)}: ...{text[max(0, m.start() - 40):m.end() + 20]}..."
                 for m in SOURCE_LABEL.finditer(text)]
    assert not hits, "internal source labels in the book:\n  " + "\n  ".join(hits[:20])


CITE_ROLE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
BIB_KEY = re.compile(r"^@\w+\{\s*([^,\s]+)\s*,", re.MULTILINE)


def test_every_cited_key_is_in_the_bibliography_file():
    keys = set(BIB_KEY.findall((REPO / "references.bib").read_text()))
    unknown = {}
    for page in sorted((REPO / "book").glob("*.md")):
        for match in CITE_ROLE.finditer(page.read_text()):
            for key in (k.strip() for k in match.group(1).split(",")):
                if key not in keys:
                    unknown.setdefault(page.name, []).append(key)
    assert not unknown, f"citation keys missing from references.bib: {unknown}"


def test_every_citation_links_to_a_bibliography_entry(built_book):
    bibliography = page_soup(built_book, "book/bibliography")
    entries = {tag["id"] for tag in bibliography.select("[id]")
               if tag.find_parent(class_="bibliography") or "citation" in tag.get("class", [])}
    assert entries, "the bibliography page lists no entries"
    dangling, citations = [], 0
    for document in toc_documents():
        for link in page_soup(built_book, document).select("main a[href*='bibliography.html#']"):
            citations += 1
            target = link["href"].split("#", 1)[1]
            if target not in entries:
                dangling.append(f"{document}: {link.get_text(strip=True)!r} -> #{target}")
    assert citations >= 20, f"only {citations} citation links found: is the selector right?"
    assert not dangling, "citations that do not reach a bibliography entry:\n  " + \
        "\n  ".join(dangling)


def test_every_exercise_has_a_hint_and_an_answer_to_reveal(built_book):
    """Each numbered exercise of a chapter carries a Hint and an Answer dropdown."""
    problems, exercises = [], 0
    for document in numbered_chapters():
        section = page_soup(built_book, document).select_one("section#exercises")
        if section is None or section.find("ol") is None:
            problems.append(f"{document}: no numbered exercises section")
            continue
        for number, item in enumerate(section.find("ol").find_all("li", recursive=False), 1):
            exercises += 1
            titles = [d.select_one(".admonition-title").get_text(strip=True)
                      for d in item.select("div.admonition.dropdown")]
            if titles != ["Hint", "Answer"]:
                problems.append(f"{document}, exercise {number}: dropdowns {titles}")
    assert not problems, "exercises without a hint and an answer:\n  " + "\n  ".join(problems)
    assert exercises >= 20, f"only {exercises} exercises found"


# --------------------------------------------------------------------------- pointers

def pointers() -> set:
    """Every "Read:" pointer of the exercises and their catalogued mistakes."""
    found = set()
    for ex in reg.EXERCISES.values():
        found.add(ex.section)
        found.update(m.section for m in ex.mistakes)
    return found


def test_every_pointer_is_a_labelled_heading_of_the_built_book(built_book):
    missing = []
    for read in sorted(pointers(), key=str):
        page = built_book / "book" / f"{read.page}.html"
        if not page.is_file() or f'id="{read.label}"' not in page.read_text():
            missing.append(f"{read.page}.html#{read.label}")
    assert not missing, f"pointers to anchors the built book does not have: {missing}"


def test_pointers_are_links_with_the_heading_text():
    for read in pointers():
        assert f"book/{read.page}.html#{read.label}" in read.url
        assert read.markdown().endswith(f"]({read.url})")
        assert reg.heading(read.page, read.label)  # the label stands above a heading
