"""Feedback and report pages run nothing, show no machine paths; the gradebook survives.

One small class of the demo assignment is graded through the real ``python -m grader
grade``: an honest student and students whose submissions attack the pages the grader
writes, the way a student who wants to steal an instructor's session or rewrite their
own score would:

* ``rich-outputs``: code cells that display HTML, JavaScript, SVG, Markdown, an
  "isolated" HTML output and a widget, each carrying a script payload;
* ``raw-markdown``: the written answer and extra markdown cells with raw HTML
  (script, event handlers, iframe srcdoc, meta refresh, base, form, object, CSS loads),
  javascript: and data: links, a cell attachment that is an SVG with a script, and
  notebook/cell metadata crafted to break out of attributes;
* ``nosy``: code that prints the grading machine's folders and raises deep inside
  NumPy (a traceback full of paths), and writes HTML files into its working folder;
* ``odd-name``: no notebook, only a file whose name is an HTML payload, so it is
  not graded and its name reaches the "not graded" page and the report.

Every payload, if it ran, would set ``document.title``, write ``localStorage``, log to
the console, fetch a URL on a local beacon server, open a popup and navigate away.
Every page is opened in real Chromium (Debian's package, via Playwright); a positive
control opens the same notebook exported without the grader's protections and sees
the payloads run, so the checks can fail.
"""
from __future__ import annotations

import base64
import contextlib
import copy
import http.server
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell

from helpers import DEMO, REPO, run_grade
from helpers import DEMO_ENV as ENV

A = "00_demo"
MARK = "PWNED"


# --------------------------------------------------------------------------- beacon
class Beacon:
    """A local HTTP server that records every request a payload makes."""

    def __init__(self):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def js(beacon: str, tag: str) -> str:
    """What an attacker's script does (no double quotes: it sits in attributes too)."""
    return (f"document.title='{MARK} {tag}';"
            f"try{{localStorage.setItem('{MARK}-{tag}','1')}}catch(e){{}};"
            f"console.log('{MARK} {tag}');"
            f"fetch('{beacon}/fetch-{tag}').catch(function(){{}});"
            f"window.open('{beacon}/popup-{tag}');"
            f"setTimeout(function(){{location.href='{beacon}/nav-{tag}'}},300);")


def html_payloads(beacon: str, tag: str) -> str:
    """Raw HTML that runs ``js`` or loads from the beacon in as many ways as we know."""
    code = js(beacon, tag)
    inner = f"<script>{code}</script>".replace("&", "&amp;").replace('"', "&quot;")
    b64 = base64.b64encode(f"<script>{code}</script>".encode()).decode()
    return (f'<script>{code}</script>\n'
            f'<img src="x" onerror="{code}">\n'
            f'<svg onload="{code}"><script>{code}</script></svg>\n'
            f'<details open ontoggle="{code}"><summary>s</summary></details>\n'
            f'<iframe srcdoc="{inner}"></iframe>\n'
            f'<iframe src="data:text/html;base64,{b64}"></iframe>\n'
            f'<object data="data:text/html;base64,{b64}"></object>\n'
            f'<embed src="data:text/html;base64,{b64}">\n'
            f'<meta http-equiv="refresh" content="1;url={beacon}/refresh-{tag}">\n'
            f'<base href="{beacon}/base-{tag}/">\n'
            f'<link rel="stylesheet" href="{beacon}/css-{tag}">\n'
            f'<style>@import url({beacon}/import-{tag});</style>\n'
            f'<div style="background:url({beacon}/bg-{tag})">styled</div>\n'
            f'<img src="{beacon}/img-{tag}">\n'
            f'<form action="{beacon}/form-{tag}"><input autofocus onfocus="{code}"></form>\n'
            f'<a href="javascript:{code}" id="jslink-{tag}">click me</a>\n'
            f'<math><mtext><table><mglyph><style><img src=x onerror="{code}">'
            f'</style></mglyph></table></mtext></math>\n')


def svg_payload(beacon: str, tag: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" onload="{js(beacon, tag)}">'
            f'<script>{js(beacon, tag)}</script><circle r="5"/></svg>')


# --------------------------------------------------------------------------- class
def _answer_cell(nb):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "why_max")


def rich_outputs(nb, beacon):
    b = beacon
    nb.cells.append(new_code_cell(
        "from IPython.display import HTML, SVG, Javascript, Markdown, display\n"
        f"display(HTML({html_payloads(b, 'html-output')!r}))\n"
        f"display(Javascript({js(b, 'js-output')!r}))\n"
        f"display(SVG({svg_payload(b, 'svg-output')!r}))\n"
        f"display(Markdown({html_payloads(b, 'markdown-output')!r}))\n"
        f"display(HTML({html_payloads(b, 'isolated-output')!r}), metadata={{'isolated': True}})\n"
        "display({'application/vnd.jupyter.widget-view+json': {'model_id': 'x', "
        "'version_major': 2, 'version_minor': 0}, 'text/plain': 'a widget'}, raw=True)\n"
        f"print({'</pre>' + html_payloads(b, 'stdout')!r})\n"
        # a terminal hyperlink (OSC 8) in a stream: must not become a javascript: link
        f"print({chr(27) + ']8;;javascript:' + js(b, 'osc8') + chr(27) + chr(92) + 'click'!r})\n"))
    return nb


def raw_markdown(nb, beacon):
    b = beacon
    answer = _answer_cell(nb)
    answer.source = ("Subtracting the max keeps $e^{v_j - \\max_k v_k} \\le 1$.\n\n"
                     + html_payloads(b, "answer")
                     + f"\n[a link](javascript:{js(b, 'md-link')})\n"
                     + "\n[a data link](data:text/html;base64,"
                     + base64.b64encode(html_payloads(b, 'md-data-link').encode()).decode() + ")\n"
                     + "\n![data page](data:text/html;base64,"
                     + base64.b64encode(svg_payload(b, 'md-data').encode()).decode() + ")\n"
                     + "\n![attached](attachment:evil.svg)\n")
    answer["attachments"] = {"evil.svg": {
        "image/svg+xml": base64.b64encode(svg_payload(b, "attachment").encode()).decode()}}
    extra = new_markdown_cell(html_payloads(b, "markdown-cell"))
    extra.metadata["tags"] = [f'x" onmouseover="document.title=\'{MARK} tag\'" data-x="']
    nb.cells.insert(1, extra)
    nb.metadata["title"] = f"</title><script>{js(b, 'nb-title')}</script>"
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": {}, "version_major": 2, "version_minor": 0,
        "x": f"</script><script>{js(b, 'widget-state')}</script>"}}
    return nb


NOSY = (
    "import os, sys, tempfile\n"
    "import numpy as np\n"
    "print('cwd', os.getcwd())\n"
    "print('numpy', np.__file__)\n"
    "print('prefix', sys.prefix, 'tmp', tempfile.gettempdir())\n"
    "for name in ('evil.html', 'evil.svg', 'evil.htm'):\n"
    "    with open(name, 'w') as fh:\n"
    "        fh.write(PAYLOAD)\n"
    "np.linalg.inv(np.zeros((2, 2)))\n")


def nosy(nb, beacon):
    nb.cells.append(new_code_cell(f"PAYLOAD = {html_payloads(beacon, 'written-file')!r}\n" + NOSY))
    return nb


HOSTILE = {"rich-outputs": rich_outputs, "raw-markdown": raw_markdown, "nosy": nosy}
ODD_NAME = '<img src=x onerror="document.title=1">.ipynb'


@pytest.fixture(scope="module")
def beacon():
    server = Beacon()
    yield server
    server.close()


@pytest.fixture(scope="module")
def hostile_class(tmp_path_factory, beacon):
    """(course root, grade run): the honest student and the attackers, graded once."""
    from grader import synthetic

    root = tmp_path_factory.mktemp("hostile") / "course"
    (root / "solutions").mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copytree(DEMO / "solutions" / A, root / "solutions" / A)
    subprocess.run([sys.executable, "-m", "grader", "release", "--root", str(root)],
                   cwd=REPO, env=ENV, check=True, capture_output=True)
    solved = synthetic.solved(root / "solutions" / A / f"{A}.ipynb",
                              root / "exercises" / A / f"{A}.ipynb")
    honest = copy.deepcopy(solved)
    _answer_cell(honest).source = ("It keeps every $e^{v_j - \\max_k v_k}$ at most 1, so "
                                   "nothing overflows.")
    synthetic.write_submission(root, "honest", A, honest)
    for student, attack in HOSTILE.items():
        nb = copy.deepcopy(solved)
        synthetic.write_submission(root, student, A, attack(nb, beacon.url))
    odd = root / "grader" / "submitted" / "odd-name" / A
    odd.mkdir(parents=True)
    (odd / ODD_NAME).write_text("{}")
    proc = run_grade(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root, proc


def pages(root: Path) -> list[Path]:
    """Every page a browser would render among the grader's output folders."""
    found = [p for folder in ("feedback", "report") for p in (root / "grader" / folder).rglob("*")
             if p.suffix.lower() in (".html", ".htm", ".svg", ".xhtml") and p.is_file()]
    return sorted(found)


# --------------------------------------------------------------------------- browser
DOM_AUDIT_JS = r"""() => {
  const bad = [];
  for (const el of document.querySelectorAll('*')) {
    const t = el.tagName.toLowerCase();
    const inHead = el.parentElement === document.head;
    if (['script', 'iframe', 'frame', 'object', 'embed', 'form', 'base', 'link', 'svg',
         'math', 'template'].includes(t) || (['meta', 'style'].includes(t) && !inHead))
      bad.push('<' + t + '>');
    for (const a of el.attributes) {
      if (a.name.startsWith('on')) bad.push(t + ' ' + a.name);
      const url = a.value.trim().toLowerCase();
      if (/^(javascript|vbscript|data):/.test(url) &&
          !(t === 'img' && a.name === 'src' && url.startsWith('data:image/')))
        bad.push(t + ' ' + a.name + '=' + url.slice(0, 40));
    }
  }
  const first = document.head && document.head.firstElementChild;
  const csp = first && first.getAttribute('http-equiv') === 'Content-Security-Policy'
    ? first.getAttribute('content') : null;
  let storage = [];
  try { storage = Object.keys(localStorage); } catch (e) {}
  return {bad, csp, storage, text: document.body ? document.body.innerText : ''};
}"""


def _frame(request):
    """The frame of a request; None for a popup's first request (no frame yet)."""
    try:
        return request.frame
    except Exception:  # noqa: BLE001 - Playwright's "frame ... not available" Error
        return None


def visit(browser, url: str, beacon: Beacon, wait_ms: int = 1500) -> dict:
    """Open ``url`` in a fresh context, wait for payloads to act, report what happened."""
    before = len(beacon.hits)
    context = browser.new_context()
    page = context.new_page()
    seen = {"console": [], "requests": [], "popups": [], "navigations": [], "errors": []}
    page.on("console", lambda m: seen["console"].append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))

    def only_local(route):
        request = route.request
        if request.is_navigation_request() and _frame(request) == page.main_frame:
            if not seen["opened"]:
                seen["opened"] = True  # our own page.goto
                route.continue_()
            else:  # the page tried to leave: note it; a 204 keeps the page where it is
                seen["navigations"].append(request.url)
                route.fulfill(status=204)
        elif request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            seen["requests"].append(request.url)
            if request.url.startswith(beacon.url):
                route.continue_()
            else:  # no network here: fail fast instead of waiting for a CDN
                route.abort()

    seen["opened"] = False
    context.route("**/*", only_local)
    try:
        page.goto(url, wait_until="commit")
        with contextlib.suppress(Exception):  # an endless subresource must not hang us
            page.wait_for_load_state("load", timeout=5_000)
        page.wait_for_timeout(wait_ms)
        seen["title"] = page.title()  # '' if the page was replaced after all
        seen.update(page.evaluate(DOM_AUDIT_JS))
    finally:
        context.close()
    seen["beacon"] = beacon.hits[before:]
    return seen


def script_ran(seen: dict) -> list[str]:
    """What in ``seen`` only a running payload script could have done."""
    out = [f"title {seen['title']!r}"] if MARK in seen.get("title", "") else []
    out += [f"localStorage {k}" for k in seen.get("storage", []) if MARK in k]
    out += [f"console: {m}" for m in seen["console"] if MARK in m]
    out += [f"popup: {p}" for p in seen["popups"]]
    return out + [f"beacon: {h}" for h in seen["beacon"]
                  if h.split("/")[1].startswith(("fetch-", "popup-", "nav-"))]


def ran(seen: dict) -> list[str]:
    """Everything in ``seen`` that shows a payload ran, reached out or tried to: a
    script, a request, a navigation, a page error or any console message (a load the
    policy blocked is logged there too)."""
    out = script_ran(seen)
    for key in ("console", "requests", "navigations", "errors", "beacon"):
        out += [f"{key}: {v}" for v in seen[key]]
    return sorted(set(out))


# --------------------------------------------------------------------------- tests
def test_payloads_run_in_a_page_without_the_protections(hostile_class, browser, beacon,
                                                        tmp_path):
    """Positive control: nbconvert's plain HTML export of the same autograded notebooks
    runs the payloads, and the checks of ``ran`` see it."""
    from nbconvert import HTMLExporter

    root, _ = hostile_class
    for student in ("rich-outputs", "raw-markdown"):
        nb = nbformat.read(root / "grader" / "autograded" / student / A / f"{A}.ipynb",
                           as_version=4)
        body, _ = HTMLExporter(template_name="classic").from_notebook_node(nb)
        plain = tmp_path / f"{student}.html"
        plain.write_text(body)
        seen = visit(browser, plain.as_uri(), beacon)
        assert any(MARK in m for m in seen["console"]), seen["console"]
        assert any("/fetch-" in r for r in seen["beacon"]), seen["beacon"]
        assert any("/popup-" in h for h in seen["beacon"]), seen["beacon"]
        assert any("/nav-" in n for n in seen["navigations"]), seen["navigations"]


def test_every_page_the_grader_wrote_runs_nothing(hostile_class, browser, beacon):
    root, _ = hostile_class
    found = pages(root)
    feedback = {p.parent.parent.name for p in found if p.name == f"{A}.html"}
    assert feedback >= {"honest", *HOSTILE, "odd-name"}, found
    assert root / "grader" / "report" / "index.html" in found
    problems = {}
    for path in found:
        seen = visit(browser, path.as_uri(), beacon)
        bad = ran(seen) + [f"DOM: {b}" for b in seen["bad"]]
        if path.suffix == ".html" and not (seen["csp"] and "script-src 'none'" in seen["csp"]):
            bad.append(f"no script-free Content-Security-Policy first in <head>: {seen['csp']}")
        if bad:
            problems[str(path.relative_to(root))] = bad
    assert not problems, json.dumps(problems, indent=1)


def test_the_policy_alone_stops_a_script_the_sanitizer_missed(hostile_class, browser, beacon,
                                                              tmp_path):
    """Second layer: a payload put into a finished feedback page after sanitizing does
    not run under the page's CSP, and does run once the CSP is taken out."""
    root, _ = hostile_class
    page = (root / "grader" / "feedback" / "honest" / A / f"{A}.html").read_text()
    injected = page.replace("<body>", "<body>" + html_payloads(beacon.url, "missed"), 1)
    assert injected != page
    with_csp, without = tmp_path / "with_csp.html", tmp_path / "without_csp.html"
    with_csp.write_text(injected)
    assert '<meta http-equiv="Content-Security-Policy"' in injected
    start = injected.index('<meta http-equiv="Content-Security-Policy"')
    without.write_text(injected[:start] + injected[injected.index(">", start) + 1:])
    blocked = visit(browser, with_csp.as_uri(), beacon)
    # a <meta refresh> is navigation, not script: only the sanitizer removes it
    assert not script_ran(blocked) and not blocked["beacon"] and not blocked["requests"], blocked
    assert any("violates the following Content Security Policy" in m
               for m in blocked["console"])
    assert script_ran(visit(browser, without.as_uri(), beacon))


def test_feedback_still_reads_well(hostile_class, browser, beacon):
    root, _ = hostile_class
    honest = visit(browser, (root / "grader/feedback/honest" / A / f"{A}.html").as_uri(), beacon)
    text = honest["text"]
    assert "Score: 3" in text and "affine: passed" in text and "softmax_rows: passed" in text
    assert "<body>" not in text and "</" not in text  # no template markup shown as text
    # no MathJax under the policy: the LaTeX stays as the student typed it
    assert "$e^{v_j - \\max_k v_k}$" in text
    hostile = visit(browser, (root / "grader/feedback/raw-markdown" / A / f"{A}.html").as_uri(),
                    beacon)
    # the attempt is shown as text to whoever reads the page, not run or hidden
    assert "<script>document.title=" in hostile["text"]
    grades = (root / "grader" / "grades.csv").read_text()
    for student in ("honest", *HOSTILE):
        assert f"{student},{A},3," in grades, grades  # attacks on pages cost no points


def test_feedback_shows_no_machine_paths(hostile_class):
    """The nosy student's traceback and prints use neutral names; positive control: the
    instructor's autograded copy of the same notebook has the real paths."""
    from grader import scrub

    root, _ = hostile_class
    folders = [p for p in scrub.machine_folders(str(root)) if len(p) > 1]
    graded = (root / "grader" / "autograded" / "nosy" / A / f"{A}.ipynb").read_text()
    assert sys.prefix in graded
    for path in pages(root):
        text = path.read_text(errors="replace")
        leaks = [f for f in folders if f in text]
        assert not leaks, (path, leaks)
    nosy_page = (root / "grader" / "feedback" / "nosy" / A / f"{A}.html").read_text()
    assert "[site-packages]/numpy/" in nosy_page and "prefix [venv]" in nosy_page
    assert "LinAlgError" in nosy_page


def test_odd_file_name_is_escaped_in_the_report(hostile_class):
    root, _ = hostile_class
    report = (root / "grader" / "report" / "index.html").read_text()
    assert "&lt;img src=x onerror=" in report and "<img src=x" not in report
    assert "odd-name" in json.loads((root / "grader/report/data.json").read_text())[
        "not_graded"][0]


# --------------------------------------------------------------------------- gradebook
def _scores(db: Path) -> list:
    with contextlib.closing(sqlite3.connect(db)) as con:
        return sorted(con.execute(
            "SELECT s.id, g.auto_score FROM grade g JOIN submitted_notebook n ON g.notebook_id"
            " = n.id JOIN submitted_assignment a ON n.assignment_id = a.id JOIN student s ON"
            " a.student_id = s.id").fetchall(), key=repr)


def _damage(db: Path) -> None:
    """Overwrite the middle of the file, as a crash or a stray write would."""
    data = bytearray(db.read_bytes())
    data[len(data) // 3: len(data) // 3 + 8192] = b"\xff" * 8192
    db.write_bytes(bytes(data))


@pytest.fixture
def course_copy(hostile_class, tmp_path):
    root, _ = hostile_class
    copy = tmp_path / "course"
    shutil.copytree(root, copy)
    return copy


def test_damaged_gradebook_is_restored_and_the_rerun_regrades(course_copy):
    from grader import gradebook

    db = course_copy / "grader" / "gradebook.db"
    before = _scores(db)
    assert len(before) >= 8 and not gradebook.problem(db)
    _damage(db)
    assert gradebook.problem(db), "the damage should fail SQLite's integrity check"
    proc = run_grade(course_copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "was unusable" in proc.stdout and "restored the copy" in proc.stdout
    assert not gradebook.problem(db) and _scores(db) == before
    assert "graded 0," in proc.stdout  # the copy is of the last finished run


def test_damaged_gradebook_without_copy_stops_with_advice(course_copy):
    db = course_copy / "grader" / "gradebook.db"
    (course_copy / "grader" / "backup" / "gradebook.db").unlink()
    _damage(db)
    damaged = db.read_bytes()
    proc = run_grade(course_copy)
    assert proc.returncode == 2
    assert "is damaged" in proc.stderr and "move it away" in proc.stderr
    assert db.read_bytes() == damaged  # left for the instructor to recover


def test_a_failing_run_gets_the_gradebook_back(course_copy):
    """Damage during a run (simulated inside the guarded block) and an exception: the
    gradebook and the run state come back as they were before the run."""
    from grader import gradebook, pipeline

    db = course_copy / "grader" / "gradebook.db"
    state = course_copy / "grader" / "grading_state.json"
    before_scores, before_state = _scores(db), state.read_text()
    with pytest.raises(RuntimeError):
        with gradebook.protected(course_copy, state, log=lambda *_: None):
            state.write_text("{}")
            _damage(db)
            raise RuntimeError("the run failed")
    assert _scores(db) == before_scores and state.read_text() == before_state
    with pytest.raises(pipeline.GradingError, match="damaged during this run"):
        with gradebook.protected(course_copy, state, log=lambda *_: None):
            _damage(db)
    assert _scores(db) == before_scores


def test_missing_gradebook_comes_back_from_its_copy(course_copy):
    db = course_copy / "grader" / "gradebook.db"
    before = _scores(db)
    db.unlink()
    proc = run_grade(course_copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "restored the copy" in proc.stdout and "graded 0," in proc.stdout
    assert _scores(db) == before


def test_server_gradebooks_are_left_to_the_server(tmp_path, monkeypatch):
    """A PostgreSQL URL: no file is copied or checked (the server's transactions and
    backups protect it)."""
    from grader import gradebook

    shutil.copy(REPO / "nbgrader_config.py", tmp_path)
    monkeypatch.setenv("COURSE_DB_URL", "postgresql://grader@localhost/bptt")
    assert gradebook.sqlite_file(tmp_path) is None
    monkeypatch.setenv("COURSE_DB_URL", f"sqlite:///{tempfile.gettempdir()}/x.db")
    assert gradebook.sqlite_file(tmp_path) == Path(tempfile.gettempdir()) / "x.db"


def test_compiled_templates_follow_their_source():
    """The per-process cache of compiled feedback templates serves a template again
    only while its source is unchanged: an edited template is compiled afresh."""
    from jinja2 import DictLoader, Environment

    from grader.inert import CompiledTemplates

    cache = CompiledTemplates()

    def render(source):
        env = Environment(loader=DictLoader({"page": source}), bytecode_cache=cache)
        return env.get_template("page").render(x=1)

    assert render("A{{ x }}") == "A1" and len(cache.compiled) == 1
    assert render("A{{ x }}") == "A1"
    assert render("B{{ x }}") == "B1"
    assert render("A{{ x }}") == "A1" and len(cache.compiled) == 1


def test_every_image_gets_an_alt_text():
    """An image without alt text gets nbconvert's words from the sanitizer (the feedback
    exporter skips nbconvert's own pass that added them); an image's own text stays."""
    from grader import inert

    png = "data:image/png;base64,iVBORw0KGgo="
    bare = inert.clean_body(f'<p><img src="{png}"></p>')
    assert f'alt="{inert.NO_ALT_TEXT}"' in bare, bare
    own = inert.clean_body(f'<img alt="loss per step" src="{png}">')
    assert 'alt="loss per step"' in own and inert.NO_ALT_TEXT not in own, own
