"""The exercise registry: every graded function of every assignment.

    EXERCISES[(assignment, name)] -> Exercise   (reference, cases, points, mistakes)
    MISTAKE_SOURCES[(assignment, name, mistake name)] -> the complete source of the
        solution cell that defines ``name``, with exactly that mistake in it

One module per assignment (a01_backprop ... a05_vanishing) defines:

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

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Mistake:
    name: str          # short, e.g. "missing transpose of W_hh in the dh recursion"
    explanation: str   # one or two sentences a student can act on
    section: str       # where to read, e.g. "Chapter 3, '...' (03_bptt.html)"
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
    rtol: float = 1e-6
    atol: float = 1e-8
    # optional: names of the returned tuple's items, for the judge's messages
    output_names: tuple[str, ...] = ()


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
    rtol: float = 1e-6
    atol: float = 1e-8


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
        EXERCISES[(a, spec.name)] = Exercise(
            assignment=a, name=spec.name, points=spec.points, reference=spec.reference,
            visible_cases=spec.visible_cases, hidden_cases=spec.hidden_cases,
            mistakes=tuple(by_fn.get(spec.name, ())), section=spec.section,
            rtol=spec.rtol, atol=spec.atol, output_names=spec.output_names)


def _load() -> None:
    from . import a01_backprop, a02_softmax, a03_bptt, a04_truncation, a05_vanishing

    for module in (a01_backprop, a02_softmax, a03_bptt, a04_truncation, a05_vanishing):
        _register(module)


_load()
