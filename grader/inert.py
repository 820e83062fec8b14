"""Pages that cannot run anything: every HTML page the grader writes goes through here.

Feedback pages show what a student wrote and what their code printed, and an
instructor opens them next to everything else in their browser. Two independent
layers keep them inert:

1. **Sanitizing.** The page body keeps only an allowlist of plain tags and attributes
   (``clean_body``): no ``<script>``, ``<iframe>``, ``<svg>``, ``<object>``, ``<form>``,
   ``<meta>``, ``<base>`` or ``<style>`` from a student, no ``on*=`` handlers, links only
   to ``http(s):``/``mailto:``/``#anchors``, images only from ``data:image/...`` (pages
   are single files: nothing is loaded from beside them). A tag
   outside the list is shown as text, so the reader sees what was submitted. The head
   is rebuilt from the grader's own charset, title and styles.
2. **Content-Security-Policy.** Every page opens with a ``<meta>`` CSP (``CSP``) that
   allows no script at all, no frames, no forms, no loads: only inline styles and
   ``data:`` images. If the sanitizer ever misses something, the browser still refuses
   to run or load it (a ``<meta http-equiv=refresh>`` is navigation, not a load: only
   the sanitizer removes it).

MathJax is a script, so it cannot run under that policy: formulas stay as their LaTeX
source (``$\\frac{\\partial L}{\\partial h_t}$``), which a student who typed them reads
as written. Rendering them would need the grader to typeset math itself.

``InertHTMLExporter`` is the nbconvert exporter of nbgrader's feedback step
(``c.GenerateFeedback.exporter_class`` in nbgrader_config.py); ``page`` builds the
grader's own pages (the class report, the "not graded" feedback); ``keep_only_pages``
leaves nothing but those pages in a student's feedback folder.
"""
from __future__ import annotations

import base64
import html
import os
import re
import shutil

from bleach.html5lib_shim import Filter
from bleach.sanitizer import Cleaner
from bs4 import BeautifulSoup
from jinja2 import BytecodeCache
from nbconvert.exporters import HTMLExporter, TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
from traitlets import Unicode, default

from . import scrub

CSP = ("default-src 'none'; script-src 'none'; object-src 'none'; frame-src 'none'; "
       "base-uri 'none'; form-action 'none'; style-src 'unsafe-inline'; img-src data:")
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "col", "colgroup",
    "dd", "del", "details", "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2",
    "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "main", "mark", "ol", "p",
    "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table",
    "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "var",
}
_IMAGE_DATA = re.compile(r"^data:image/(png|jpeg|gif|webp|svg\+xml);base64,[A-Za-z0-9+/=\s]*$")


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    if name in ("class", "id", "title"):
        return True
    if tag == "a":  # the Cleaner allows http(s) and mailto links; data: is for images only
        return name == "name" or name == "href" and not re.match(r"\s*data:", value, re.I)
    if tag == "img":
        # an SVG shown as <img> cannot run its scripts; other data: types are not images
        return name in ("alt", "width", "height") or name == "src" and bool(
            _IMAGE_DATA.match(value))
    if tag in ("td", "th"):
        return name in ("colspan", "rowspan")
    if tag in ("ol", "li"):
        return name in ("start", "value")
    return tag == "details" and name == "open"


NO_ALT_TEXT = "No description has been provided for this image"  # nbconvert's words


class _AltText(Filter):
    """Every image that kept no alt text gets nbconvert's (a screen reader then says
    what the image is not, instead of reading out its data)."""

    def __iter__(self):
        for token in super().__iter__():
            if token["type"] in ("StartTag", "EmptyTag") and token["name"] == "img":
                token["data"].setdefault((None, "alt"), NO_ALT_TEXT)
            yield token


_CLEANER = Cleaner(tags=_TAGS, attributes=_allowed_attribute,
                   protocols={"http", "https", "mailto", "data"}, strip=False,
                   strip_comments=True, filters=[_AltText])


def clean_body(fragment: str) -> str:
    """HTML ``fragment`` with only allowlisted tags and attributes left; anything else
    is escaped into visible text."""
    return _CLEANER.clean(fragment)


def data_uri(png_file) -> str:
    """A PNG file as a ``data:`` URI, the only kind of image the pages may show."""
    with open(png_file, "rb") as fh:
        return "data:image/png;base64," + base64.b64encode(fh.read()).decode("ascii")


def page(title: str, body: str, style: str = "") -> str:
    """A complete page with the CSP: ``body`` is HTML the grader built (escape student
    text before putting it in), ``style`` CSS of the grader's own."""
    return ("<!DOCTYPE html>\n<html><head>" + CSP_META + '<meta charset="utf-8">'
            f"<title>{html.escape(title)}</title>"
            + (f"<style>{style}</style>" if style else "") + "</head>\n<body>\n"
            + clean_body(body) + "\n</body></html>\n")


def inert_document(document: str) -> str:
    """A full HTML document made inert: the head keeps only its title and ``<style>``
    elements, after the CSP; everything from the first ``<body`` to the last
    ``</body>`` is ``clean_body``-ed (student content never comes before the body, and a
    ``</body>`` a student wrote cannot cut the cleaning short)."""
    head, _, rest = document.partition("<body")
    body = rest.partition(">")[2]
    if "</body>" in body:
        body = body.rpartition("</body>")[0]
    # nbgrader's template nests nbconvert's <body> in its own; any other is a student's
    body = re.sub(r"</?body\b[^>]*>", "", body, flags=re.I)
    soup = BeautifulSoup(head, "html.parser")
    title = soup.title.get_text() if soup.title else ""
    styles = "\n".join(s.get_text() for s in soup.find_all("style"))
    # the only loads in the template's CSS: icon fonts that are not shipped beside the page
    styles = re.sub(r"@font-face\s*\{[^}]*\}", "", styles)
    return page(title, body, styles)


def keep_only_pages(folder, pages: list[str]) -> None:
    """Delete everything in a feedback ``folder`` but the grader's ``pages`` (file
    names), without following links. nbgrader copies every file of the graded folder
    into the feedback folder, and a file a student's code wrote there (``evil.html``)
    would open as a live page beside the feedback."""
    for entry in os.scandir(folder):
        if entry.name in pages and entry.is_file(follow_symlinks=False):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


class CompiledTemplates(BytecodeCache):
    """The compiled Jinja templates of this process, in memory. nbgrader makes a new
    exporter (so a new Jinja environment) for every feedback page, and compiling its
    templates again took about as long as rendering the page; Jinja reuses a compiled
    template only while its source's checksum is unchanged, so an edited template is
    compiled afresh."""

    def __init__(self):
        self.compiled: dict[str, bytes] = {}

    def get_bucket(self, environment, name, filename, source):
        # an async environment compiles the same source to other code
        return super().get_bucket(environment, f"{name}|async={environment.is_async}",
                                  filename, source)

    def load_bytecode(self, bucket) -> None:
        if bucket.key in self.compiled:
            bucket.bytecode_from_string(self.compiled[bucket.key])

    def dump_bytecode(self, bucket) -> None:
        self.compiled[bucket.key] = bucket.bytecode_to_string()


class InertHTMLExporter(HTMLExporter):
    """nbgrader's feedback exporter with sanitized outputs (nbconvert drops JavaScript
    and widget outputs, cleans HTML ones), every page passed through ``inert_document``,
    and the grading machine's paths replaced by neutral names (``grader.scrub``). Its
    templates are compiled once per process (``CompiledTemplates``)."""

    compiled_templates = CompiledTemplates()

    course_root = Unicode("", help="the course root, shown as [course] in feedback").tag(
        config=True)

    @default("sanitize_html")
    def _sanitize_default(self):
        return True

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = self.compiled_templates
        return environment

    def from_notebook_node(self, nb, resources=None, **kw):
        # HTMLExporter.from_notebook_node (nbconvert 7.17) without its last step, which
        # parsed the whole page again with BeautifulSoup to add alt texts and tabindex
        # (a fifth of the page's cost): the sanitizer adds the alt texts (``_AltText``)
        # and drops tabindex anyway
        language = nb.metadata.get("language_info", {})
        lexer = language.get("pygments_lexer", language.get("name", None))
        self.register_filter("highlight_code", self.filters.get(
            "highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self)))
        resources = self._init_resources(resources)
        self.register_filter("filter_data_type", WidgetsDataTypeFilter(
            notebook_metadata=self._nb_metadata, parent=self, resources=resources))
        output, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        output = scrub.scrub_paths(output, course_root=self.course_root)
        return inert_document(output), resources
