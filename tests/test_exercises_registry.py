"""The exercise registry (grader/exercises) and the solution notebooks agree.

* every reference passes its own visible and hidden cases (through the judge);
* every catalogued mistake differs from the reference on each case set, and the
  judge names exactly that mistake for it (so no two mistakes are confused);
* each assignment has >= 3 mistakes, >= 1 manually graded answer, and test cells
  in the SPEC's form with the registry's points;
* the functions of solutions/<a>/<a>.ipynb equal the references on all cases, and
  the notebook is what tools/author_assignments.py generates.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from course_lib import checks, judging
from grader import exercises as reg
from grader import judge
from grader.nbapi import ASSIGNMENT_IDS as ASSIGNMENTS

REPO = Path(__file__).resolve().parent.parent
HIDDEN_SEEDS = tuple(range(12)) + (12345, 2**63 - 1)  # the grader draws 64-bit seeds
KEYS = sorted(reg.EXERCISES)


def _case_sets(ex):
    yield "visible", False, judge.cases_for(ex, False)
    for seed in HIDDEN_SEEDS:
        yield f"hidden seed {seed}", True, judge.cases_for(ex, True, seed=seed)


def _same(ex, a, b) -> bool:
    return all(x[0] == "ok" and y[0] == "ok" and
               not judging.mismatches(x[1], y[1], ex.rtol, ex.atol) for x, y in zip(a, b))


@pytest.mark.parametrize("key", KEYS, ids=["/".join(k) for k in KEYS])
def test_reference_passes_its_cases(key):
    ex = reg.EXERCISES[key]
    for label, hidden, cases in _case_sets(ex):
        assert cases, f"{key} has no {label} cases"
        v = judge.judge_record(ex, cases, checks.run_cases(ex.reference, cases), hidden)
        assert v.passed, f"{label}: {v.message}"


@pytest.mark.parametrize("key", KEYS, ids=["/".join(k) for k in KEYS])
def test_mistakes_differ_and_are_named(key):
    ex = reg.EXERCISES[key]
    for label, hidden, cases in _case_sets(ex):
        ref = judging.outputs_of(ex.reference, cases)
        outs = {}
        for m in ex.mistakes:
            out = judging.outputs_of(m.fn, cases)
            assert all(o[0] == "ok" for o in out), f"{m.name} raises on {label}"
            assert not _same(ex, out, ref), f"{m.name!r} equals the reference on {label}"
            outs[m.name] = out
            v = judge.judge_record(ex, cases, checks.run_cases(m.fn, cases), hidden)
            assert not v.passed and v.mistake == m.name, f"{label}: {m.name}: {v.message}"
        names = list(outs)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                assert not _same(ex, outs[a], outs[b]), f"{a!r} == {b!r} on {label}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_catalogue_size_and_sources(assignment):
    keys = [k for k in reg.MISTAKE_SOURCES if k[0] == assignment]
    assert len(keys) >= 3
    for a, fn, name in keys:
        source = reg.MISTAKE_SOURCES[(a, fn, name)]
        assert re.search(rf"^def {fn}\s*\(", source, re.M)
        assert "### BEGIN" not in source and "### END" not in source
        assert name in {m.name for m in reg.EXERCISES[(a, fn)].mistakes}
        solution = reg.strip_markers(reg.MODULES[a].SOLUTIONS[fn])
        assert source != solution


def _notebook(assignment):
    return json.loads((REPO / "solutions" / assignment / f"{assignment}.ipynb").read_text())


def _nbg(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_notebook_cells_follow_the_protocol(assignment):
    nb = _notebook(assignment)
    cells = nb["cells"]
    first_code = next(c for c in cells if c["cell_type"] == "code")
    src = "".join(first_code["source"])
    assert "import numpy as np" in src and "import course_lib" in src
    names = {n for a, n in reg.EXERCISES if a == assignment}
    tests = {}
    manual = 0
    ids = []
    for c in cells:
        m = _nbg(c)
        if not m:
            continue
        assert m["schema_version"] == 3
        ids.append(m["grade_id"])
        source = "".join(c["source"])
        if c["cell_type"] == "markdown" and m.get("grade") and m.get("solution"):
            manual += 1
            assert m["points"] > 0
        if c["cell_type"] == "code" and m.get("grade") and not m.get("solution"):
            name = m["grade_id"][len("test_"):]
            assert m["locked"] and m["points"] == reg.EXERCISES[(assignment, name)].points
            # the harness under a private name, so a student's own `check` cannot clash
            assert "from course_lib.checks import check as _course_check" in source
            assert f'_course_check("{assignment}", "{name}", {name})' in source
            assert f'_course_check("{assignment}", "{name}", {name}, hidden=True)' in source
            assert "### BEGIN HIDDEN TESTS" in source
            tests[name] = c
        if c["cell_type"] == "code" and m.get("solution"):
            assert m["grade_id"] in names and not m.get("grade")
            assert re.search(rf"^def {m['grade_id']}\s*\(", source, re.M)
    assert len(ids) == len(set(ids)), "duplicate grade ids"
    assert set(tests) == names
    assert manual >= 1


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_notebook_solutions_equal_reference(assignment):
    nb = _notebook(assignment)
    module = reg.MODULES[assignment]
    for c in nb["cells"]:
        m = _nbg(c)
        if c["cell_type"] != "code" or not m.get("solution"):
            continue
        name = m["grade_id"]
        source = reg.strip_markers("".join(c["source"]))
        assert source == reg.strip_markers(module.SOLUTIONS[name])
        fn = reg.compile_cell(module.PRELUDE, source, name, name)
        ex = reg.EXERCISES[(assignment, name)]
        for label, _, cases in _case_sets(ex):
            assert _same(ex, judging.outputs_of(fn, cases), judging.outputs_of(ex.reference, cases)), \
                f"{name} differs from the reference on {label}"


def test_notebooks_are_generated():
    from tools import author_assignments

    for a in ASSIGNMENTS:
        fresh = author_assignments.build(a)
        committed = _notebook(a)
        assert [(c["cell_type"], "".join(c["source"]), c["metadata"]) for c in fresh["cells"]] == \
            [(c["cell_type"], "".join(c["source"]), c["metadata"]) for c in committed["cells"]], \
            f"solutions/{a} is stale: run python -m tools.author_assignments"


@pytest.mark.parametrize("key", KEYS, ids=["/".join(k) for k in KEYS])
def test_notebook_self_check_data_is_current(key, monkeypatch):
    """The notebook's own check (course_lib/data/checks, no grader) says exactly what the
    grader's judge says on the visible cases, for the reference and every mistake. If
    this fails: python -m tools.author_assignments."""
    monkeypatch.delenv("COURSE_CHECKS_DATA", raising=False)
    a, name = key
    ex = reg.EXERCISES[key]
    cases = judge.cases_for(ex, False)
    for fn in [ex.reference, *(m.fn for m in ex.mistakes)]:
        here = judging.self_check(a, name, fn)
        grader_says = judge.judge_fn(ex, cases, fn)
        assert (here.passed, here.message) == (grader_says.passed, grader_says.message)


def test_a_notebook_without_course_lib_says_how_to_get_it():
    """Opened outside the repository: the first cell explains the install, no ImportError."""
    import subprocess
    import sys

    prelude = reg.MODULES["03_bptt"].PRELUDE
    code = ("import sys\nsys.modules['course_lib'] = None  # not installed\n"
            f"exec({prelude!r})\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "pip install" in proc.stderr and "bptt-course[student]" in proc.stderr
    assert "ImportError" not in proc.stderr and "Traceback" not in proc.stderr


def _section_key(title: str) -> str:
    """A section title as it compares: the math of a heading ($\\partial L/\\partial h_t$,
    $\\hat y$) and the ASCII of a code comment (dL/dh_t, y_hat) reduce to the same letters."""
    return re.sub(r"[^a-z0-9]", "", title.lower().replace("partial", "d").replace("hat", ""))


def _chapter_sections(chapter: str) -> set[str]:
    """The headings of book/<chapter>_*.md, outside its code cells."""
    text = next((REPO / "book").glob(f"{int(chapter):02d}_*.md")).read_text()
    sections, in_code = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"#{1,6} (.+)", line)):
            sections.add(_section_key(m[1]))
    return sections


def _cited_sections(nb: dict) -> list[tuple[str, str]]:
    """(chapter, title) of every section an assignment notebook sends its reader to: the
    quoted titles of its "# Read: Chapter N, ..." comments, the italic titles of the
    sentence "This assignment follows Chapter N (...) ...", and "the chapter's *title*"."""
    cited, chapter = [], None
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "code":
            src = re.sub(r"\n[ \t]*# (?=[a-z\"])", " ", src)  # a comment continued on a new line
            for n, rest in re.findall(r"# Read: Chapter (\d), (.*)", src):
                cited += [(n, title) for title in re.findall(r'"([^"]+)"', rest)]
            continue
        if m := re.search(r"This assignment follows Chapter (\d) \([^)]*\)(.*?)\.\s", src, re.S):
            chapter = m[1]
            cited += [(chapter, title) for title in re.findall(r"\*([^*]+)\*", m[2])]
        cited += [(chapter, title) for title in re.findall(r"the chapter's \*([^*]+)\*", src)]
    return cited


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_section_a_notebook_names_is_a_heading_of_its_chapter(assignment):
    nb = json.loads((REPO / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    cited = _cited_sections(nb)
    assert cited, "the notebook names no section of the book"  # control: the parser reads it
    missing = [f"Chapter {n}: {title!r}" for n, title in cited
               if _section_key(title) not in _chapter_sections(n)]
    assert not missing, "sections named in the notebook that the book does not have: " + \
        ", ".join(missing)
