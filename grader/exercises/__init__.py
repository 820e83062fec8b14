"""The exercise registry: every graded function of every assignment.

    EXERCISES[(assignment, name)] -> Exercise   (reference, cases, points, mistakes)
    MISTAKE_SOURCES[(assignment, name, mistake name)] -> the complete source of the
        solution cell that defines ``name``, with exactly that mistake in it

One module per assignment (a01_backprop ... a06_language_model) defines:

* ``ASSIGNMENT``, ``PRELUDE`` (the notebook's first code cell: imports),
* ``SOLUTIONS``: {name: source of the solution cell, with ``### BEGIN/END SOLUTION``}.
  tools/author_assignments.py writes these into solutions/<a>/<a>.ipynb; the notebook
  is generated from them (one source of truth);
* ``MISTAKES``: list of ``MistakeEdit`` (function, name, explanation, section, and the
  text edits that turn the solution into the wrong version);
* ``EXERCISES_SPEC``: list of ``ExerciseSpec`` (name, points, reference, cases, section).

A mistake's source is the solution cell (markers removed) with the edits applied, so a
submission "with exactly that mistake" differs from the solution in those lines only,
and the catalogued ``Mistake.fn`` is compiled from that same source: the judge's
diagnosis and the fixture submissions can never drift apart.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from course_lib.judging import ATOL, RTOL


@dataclass(frozen=True)
class Mistake:
    name: str          # short, e.g. "missing transpose of W_hh in the dh recursion"
    explanation: str   # one or two sentences a student can act on
    section: "Read"    # where to read
    fn: Callable       # a wrong implementation with the reference's signature


@dataclass(frozen=True)
class Exercise:
    assignment: str    # "03_bptt"
    name: str          # the student's function name in the notebook
    points: int
    reference: Callable          # correct implementation (may use course_lib), same signature
    visible_cases: Callable[[], list[dict]]              # small fixed cases (kwargs dicts)
    hidden_cases: Callable[[np.random.Generator], list[dict]]  # drawn at grading time
    mistakes: tuple[Mistake, ...]
    section: str
    rtol: float = RTOL
    atol: float = ATOL
    # optional: names of the returned tuple's items, for the judge's messages
    output_names: tuple[str, ...] = ()
    # optional: named sizes of a case ({"T": 5, "B": 3}) for messages and the diagnosis
    dims: Callable[[dict], dict] | None = None
    # optional: ((output key, input name), ...) compared as output - input (the update)
    updates_of: tuple = ()
    # optional: other implementations that are also correct (a contract that allows
    # two designs); a student matching any of them passes
    accepted: tuple = ()
    # a correct implementation in plain NumPy that keeps its inputs' dtype: run on
    # float32 inputs it measures the rounding noise of each output (the tolerance)
    probe: Callable | None = None


# ---------------------------------------------------------------- pointers into the book
REPO = Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=None)
def course_url() -> str:
    """The built book's address: ``html.baseurl`` of _config.yml (the one place it is
    configured; Sphinx uses it too). Empty: links are relative to the book's folder."""
    try:
        text = (REPO / "_config.yml").read_text()
    except OSError:
        return ""
    m = re.search(r"^html:\n(?:[ \t]+.*\n)*?[ \t]+baseurl:[ \t]*[\"']?([^\"'\n#]*)", text, re.M)
    return m.group(1).strip().rstrip("/") if m else ""


@functools.lru_cache(maxsize=None)
def repository_url() -> str:
    """The course repository's address: ``repository_url`` of _config.yml's
    myst_substitutions (the one place it is set; the book's pages use it too)."""
    try:
        text = (REPO / "_config.yml").read_text()
    except OSError:
        return ""
    m = re.search(r"^[ \t]+repository_url:[ \t]*[\"']?([^\"'\n#]*)", text, re.M)
    return m.group(1).strip() if m else ""


@functools.lru_cache(maxsize=None)
def heading(page: str, label: str) -> str:
    """The text of the heading that the MyST label ``(label)=`` stands above."""
    try:
        lines = (REPO / "book" / f"{page}.md").read_text().splitlines()
        i = lines.index(f"({label})=")
    except (OSError, ValueError):
        raise LookupError(f"book/{page}.md has no label ({label})= above a heading") from None
    title = next(line for line in lines[i + 1:] if line.strip())
    return title.lstrip("#").strip().replace("$", "")


LATEX_AS_TEXT = (("\\partial ", "∂"), ("\\partial", "∂"), ("\\hat y", "ŷ"), ("\\hat{y}", "ŷ"),
                 ("_1", "₁"), ("_2", "₂"), ("\\", ""))


def plain(text: str) -> str:
    """A heading's inline LaTeX as plain text, for messages printed in a terminal."""
    for latex, shown in LATEX_AS_TEXT:
        text = text.replace(latex, shown)
    return text


INSTALL_HINT = (
    "This notebook needs the course library (course_lib). Install what the exercises "
    "need with\n    pip install \"bptt-course[student] @ git+{repository}\"\n"
    "(or `make student` in a clone of the course repository), then restart the kernel.")


def prelude(*imports: str) -> str:
    """The first code cell of a notebook: NumPy, then course_lib or how to get it."""
    hint = INSTALL_HINT.format(
        repository=repository_url() or "<address of the course repository>")
    return ("import numpy as np\n\n"
            "try:\n    import course_lib  # the course library: helpers and the self-check\n"
            "except ModuleNotFoundError:\n"
            f"    raise SystemExit({hint!r}) from None\n"
            + "".join(f"{line}\n" for line in imports))


@dataclass(frozen=True)
class Read:
    """Where to read: a labelled heading of a book page, e.g. Read("03_bptt", "ch3-recursion")."""
    page: str
    label: str

    @property
    def url(self) -> str:
        base = course_url()
        return f"{base + '/' if base else ''}book/{self.page}.html#{self.label}"

    def __str__(self) -> str:
        return f"Chapter {int(self.page[:2])}, \"{plain(heading(self.page, self.label))}\": {self.url}"

    def markdown(self) -> str:
        return f"Chapter {int(self.page[:2])}, [{heading(self.page, self.label)}]({self.url})"


# ---------------------------------------------------------------- authoring helpers
@dataclass(frozen=True)
class MistakeEdit:
    """A catalogued mistake written as text edits of the solution cell."""
    fn: str
    name: str
    explanation: str
    section: str
    edits: tuple[tuple[str, str], ...]  # (old, new): old must occur exactly once


@dataclass(frozen=True)
class ExerciseSpec:
    name: str
    points: int
    reference: Callable
    visible_cases: Callable
    hidden_cases: Callable
    section: str
    what: str  # one line for the test cell's docstring
    output_names: tuple[str, ...] = ()
    dims: Callable[[dict], dict] | None = None
    updates_of: tuple = ()
    accepted: tuple = ()
    rtol: float = RTOL
    atol: float = ATOL


_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.M)


def strip_markers(source: str) -> str:
    """A solution cell as a perfect student would have typed it."""
    return _MARKERS.sub("", source)


def apply_edits(source: str, edits, label: str = "") -> str:
    out = source
    for old, new in edits:
        count = out.count(old)
        if count != 1:
            raise ValueError(f"mistake {label!r}: {old!r} occurs {count} times in the solution")
        out = out.replace(old, new)
    return out


def compile_cell(prelude: str, source: str, fn_name: str, label: str) -> Callable:
    """Run the notebook's import cell and one answer cell; return the function."""
    namespace: dict = {"__name__": f"mistake_{fn_name}"}
    exec(compile(prelude, f"<prelude {label}>", "exec"), namespace)  # noqa: S102 - our text
    exec(compile(source, f"<cell {label}>", "exec"), namespace)  # noqa: S102 - our text
    return namespace[fn_name]


EXERCISES: dict[tuple[str, str], Exercise] = {}
MISTAKE_SOURCES: dict[tuple[str, str, str], str] = {}
MODULES: dict[str, object] = {}


def _register(module) -> None:
    a = module.ASSIGNMENT
    MODULES[a] = module
    by_fn: dict[str, list[Mistake]] = {}
    for m in module.MISTAKES:
        source = apply_edits(strip_markers(module.SOLUTIONS[m.fn]), m.edits, m.name)
        MISTAKE_SOURCES[(a, m.fn, m.name)] = source
        by_fn.setdefault(m.fn, []).append(
            Mistake(m.name, m.explanation, m.section,
                    compile_cell(module.PRELUDE, source, m.fn, f"{a} {m.name}")))
    for spec in module.EXERCISES_SPEC:
        solution = compile_cell(module.PRELUDE, strip_markers(module.SOLUTIONS[spec.name]),
                                spec.name, f"{a} solution")
        EXERCISES[(a, spec.name)] = Exercise(
            assignment=a, name=spec.name, points=spec.points, reference=spec.reference,
            visible_cases=spec.visible_cases, hidden_cases=spec.hidden_cases,
            mistakes=tuple(by_fn.get(spec.name, ())), section=spec.section,
            rtol=spec.rtol, atol=spec.atol, output_names=spec.output_names, dims=spec.dims,
            updates_of=spec.updates_of, accepted=spec.accepted, probe=solution)


def _load() -> None:
    from . import (a01_backprop, a02_softmax, a03_bptt, a04_truncation, a05_vanishing,
                   a06_language_model)

    for module in (a01_backprop, a02_softmax, a03_bptt, a04_truncation, a05_vanishing,
                   a06_language_model):
        _register(module)


_load()
