"""Copied answers are flagged, honest ones are not (grader/similarity.py).

A small class answers one question, BPTT through a stored sequence: three students
write it independently in their own styles, one pastes course_lib's ``rnn.backward``,
one pastes it with renamed variables and reordered lines, one copies a classmate the
same way. Only the copies are flagged; no score is touched (nothing here grades)."""
from __future__ import annotations

import inspect
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from grader import similarity

REPO = Path(__file__).resolve().parent.parent
A = "03_bptt"

TEMPLATE = '''def backward(params, xs, hs, dh_out, activation="tanh"):
    """BPTT through a stored sequence: xs (T, B, D), hs (T+1, B, H), dh_out (T, B, H).
    Returns grads dict W_xh (H, D), W_hh (H, H), b_h (H,) and dh0 (B, H)."""
    # YOUR CODE HERE
    raise NotImplementedError()
'''

HONEST = {
    "hana": '''def backward(params, xs, hs, dh_out, activation="tanh"):
    T = xs.shape[0]
    gW_xh = np.zeros_like(params["W_xh"])
    gW_hh = np.zeros_like(params["W_hh"])
    gb = np.zeros_like(params["b_h"])
    carry = np.zeros_like(hs[0])
    for step in reversed(range(T)):
        total = dh_out[step] + carry
        pre = total * (1.0 - hs[step + 1] ** 2)      # tanh'
        gW_xh += pre.T @ xs[step]
        gW_hh += pre.T @ hs[step]
        gb += pre.sum(axis=0)
        carry = pre @ params["W_hh"]
    return {"W_xh": gW_xh, "W_hh": gW_hh, "b_h": gb}, carry
''',
    "ivan": '''def backward(params, xs, hs, dh_out, activation="tanh"):
    grads = {name: np.zeros_like(params[name]) for name in ("W_xh", "W_hh", "b_h")}
    t = len(xs) - 1
    upstream = 0.0
    while t >= 0:
        h_t, h_before = hs[t + 1], hs[t]
        delta = (dh_out[t] + upstream) * (1 - np.square(h_t))
        grads["W_xh"] = grads["W_xh"] + np.einsum("bh,bd->hd", delta, xs[t])
        grads["W_hh"] = grads["W_hh"] + np.einsum("bh,bk->hk", delta, h_before)
        grads["b_h"] = grads["b_h"] + np.einsum("bh->h", delta)
        upstream = np.einsum("bh,hk->bk", delta, params["W_hh"])
        t -= 1
    return grads, upstream * np.ones_like(hs[0])
''',
    "jun": '''def backward(params, xs, hs, dh_out, activation="tanh"):
    W = params["W_hh"]
    deltas = []
    g = np.zeros(hs.shape[1:])
    for t in range(len(xs), 0, -1):
        d = (g + dh_out[t - 1]) * (1 - hs[t] * hs[t])
        deltas.append(d)
        g = d.dot(W)
    deltas = np.array(deltas[::-1])                      # (T, B, H), forward order
    flat = lambda a: a.reshape(-1, a.shape[-1])
    out = dict(W_xh=flat(deltas).T.dot(flat(xs)),
               W_hh=flat(deltas).T.dot(flat(hs[:-1])),
               b_h=flat(deltas).sum(0))
    return out, g
''',
}


def disguise(code: str, renames: dict, swap: tuple[str, str]) -> str:
    """Rename variables and swap two independent lines, as a student hiding a copy would."""
    for old, new in renames.items():
        code = re.sub(rf"\b{old}\b", new, code)
    first, second = swap
    code = code.replace(first, "\0").replace(second, first).replace("\0", second)
    return "# my own solution\n" + code


def library_backward() -> str:
    from course_lib import rnn

    src = inspect.getsource(rnn.backward)
    return re.sub(r'    """.*?"""\n', "", src, flags=re.S)  # a paster drops the docstring


def notebook(code: str) -> nbformat.NotebookNode:
    meta = {"nbgrader": {"grade": False, "grade_id": "backward", "locked": False,
                         "schema_version": 3, "solution": True, "task": False}}
    test = {"nbgrader": {"grade": True, "grade_id": "test_backward", "locked": True,
                         "points": 3, "schema_version": 3, "solution": False, "task": False}}
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import numpy as np\nfrom course_lib import activations"),
        nbformat.v4.new_code_cell(code, metadata=meta),
        nbformat.v4.new_code_cell('check("03_bptt", "backward", backward)', metadata=test)])


@pytest.fixture(scope="module")
def class_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(REPO / "course_lib", root / "course_lib")
    answers = dict(HONEST)
    lib = library_backward()
    answers["pasted"] = "import numpy as np\n" + lib
    answers["edited"] = disguise(lib, {"das": "deltas", "dh_next": "carry", "W_hh": "Whh",
                                       "da_rows": "rows"},
                                 ("    W_hh = params[\"W_hh\"]\n",
                                  "    df = activations.get(activation).df\n"))
    answers["copycat"] = disguise(HONEST["hana"], {"gW_xh": "dWx", "gW_hh": "dWh", "gb": "db",
                                                   "carry": "dh_next", "total": "dh",
                                                   "pre": "da", "step": "t"},
                                  ("    gW_xh += pre.T @ xs[step]\n",
                                   "    gb += pre.sum(axis=0)\n"))
    for student, code in answers.items():
        path = root / "grader" / "submitted" / student / A / f"{A}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(notebook(code), path)
    ex = root / "exercises" / A / f"{A}.ipynb"
    ex.parent.mkdir(parents=True)
    nbformat.write(notebook(TEMPLATE), ex)
    flagged = similarity.analyse(root, {(s, A) for s in answers})
    return root, flagged


def pair_set(flagged) -> set:
    return {frozenset((p["a"], p["b"])) for p in flagged.get(A, [])}


def test_copies_are_flagged(class_root):
    _, flagged = class_root
    pairs = pair_set(flagged)
    assert frozenset(("course_lib/rnn.py", "pasted")) in pairs
    assert frozenset(("course_lib/rnn.py", "edited")) in pairs
    assert frozenset(("hana", "copycat")) in pairs


def test_honest_answers_are_not_flagged(class_root):
    _, flagged = class_root
    honest = set(HONEST) - {"hana"}  # hana was copied: her pair with copycat is expected
    for pair in pair_set(flagged):
        assert not pair & honest, f"honest answer flagged: {sorted(pair)}"
        assert pair != frozenset(("hana", "course_lib/rnn.py"))
    notes = similarity.notes(flagged)
    assert ("ivan", A) not in notes and ("jun", A) not in notes
    assert "course_lib/rnn.py" in notes[("pasted", A)]
    assert notes[("copycat", A)].startswith("similar to hana (")
    assert "copycat" in notes[("hana", A)]  # both sides of a pair learn of it


def test_report_section_shows_pairs_side_by_side_escaped(class_root):
    root, _ = class_root
    page = similarity.report_section(root)
    assert "hana and copycat" in page or "copycat and hana" in page
    assert "def backward(params, xs, hs, dh_out, activation=&quot;tanh&quot;)" in page
    assert "<script" not in page.lower()


def test_malformed_notebooks_are_read_as_empty(tmp_path):
    """A submission is untrusted JSON: odd shapes give no answer code, never a crash."""
    import json

    shapes = [[], {"cells": 3}, {"cells": [1, "x", None]},
              {"cells": [{"metadata": [], "cell_type": "code", "source": "x = 1"}]},
              {"cells": [{"metadata": {"nbgrader": "yes"}, "cell_type": "code"}]},
              {"cells": [{"metadata": {"nbgrader": {"solution": True}}, "cell_type": "code",
                          "source": {"not": "text"}}]}]
    for i, shape in enumerate(shapes):
        path = tmp_path / f"{i}.ipynb"
        path.write_text(json.dumps(shape))
        assert similarity.answer_code(path) == "", shape
    link = tmp_path / "link.ipynb"
    link.symlink_to(tmp_path / "0.ipynb")
    assert similarity.answer_code(link) == ""


def test_library_fingerprints_without_the_template_are_copydetects_own(tmp_path, monkeypatch):
    """course_lib is tokenised once (kept in the user's cache folder) and its template
    hashes removed per assignment: the same hashes, positions, coverage and offsets as
    copydetect's fingerprint made with that boilerplate, for every module and a
    template that shares code with them; with no cache, from the cache the first run
    wrote, and from a damaged one."""
    import numpy as np

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    shutil.copytree(REPO / "course_lib", tmp_path / "course_lib")
    cache = similarity.cache_file()
    assert cache.is_relative_to(tmp_path / "cache")
    template = similarity.fingerprint("template", TEMPLATE + inspect.getsource(shutil.copy))
    sources = similarity.library_sources(tmp_path)
    for state in ("fresh", "cached", "damaged"):
        if state == "damaged":
            cache.write_text(cache.read_text().replace('"offsets": [[', '"offsets": 3, "x": [[', 1))
        written = cache.read_text() if cache.exists() else None
        library = similarity.library_fingerprints(tmp_path)
        assert sorted(library) == sorted(sources)
        assert state != "cached" or cache.read_text() == written  # read, not made again
        assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no half-written file
        for name, source in sources.items():
            mine = similarity.without(library[name], template.hashes)
            theirs = similarity.fingerprint(name, source, template.hashes)
            assert mine.hashes == theirs.hashes, (state, name)
            assert ({h: list(i) for h, i in mine.hash_idx.items()}
                    == {h: list(i) for h, i in theirs.hash_idx.items()}), (state, name)
            assert mine.token_coverage == theirs.token_coverage, (state, name)
            assert np.array_equal(mine.offsets, theirs.offsets), (state, name)
