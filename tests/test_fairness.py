"""Fair grades, without a kernel: the same correct code passes for every student, and
every catalogued mistake fails for every student, by a clear margin.

For each exercise, honest implementations (the solution cell, the alternatives of
tests/fixtures/honest: loops, einsum, recursion, other valid formulas, PyTorch
conventions; and each of them computed in float32 and cast back) are judged on the
visible cases and on the hidden cases of 100 student names. Each must pass; each
catalogued mistake must fail on every case set, with its largest error at least
MARGIN times the tolerance, while the honest float32 errors stay below half of it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from course_lib import judging
from grader import exercises as reg
from grader import judge

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures" / "honest"))
from alternatives import ALTERNATIVES  # noqa: E402

STUDENTS = [f"student{i:03d}" for i in range(100)]
# a fixed salt in place of the course's secret one (grader/secret/): any salt
# draws a fresh set of hidden cases per student
SALT = "test-salt-" + "0" * 32
MARGIN = 100.0
KEYS = sorted(reg.EXERCISES)
REPO = Path(__file__).resolve().parent.parent


def honest(key):
    a, name = key
    module = reg.MODULES[a]
    solution = reg.compile_cell(module.PRELUDE, reg.strip_markers(module.SOLUTIONS[name]),
                                name, name)
    fns = [("solution cell", solution)] + ALTERNATIVES[name]
    return fns + [(f"{label} in float32", judging.in_float32(fn)) for label, fn in fns]


def _expected(ex, cases, refs, refs32, accepted=()) -> list:
    """For each accepted answer (the reference first), per case: its outputs as the
    judge compares them and how far float32 moves them (the judge's noise tree). The
    same for every function judged on these cases, so made once."""
    out = []
    for option in [refs, *accepted]:
        pairs = []
        for ref, z, case in zip(option, refs32, cases):
            r, z = (judging.as_updates(t[1], case, ex.updates_of) for t in (ref, z))
            pairs.append((r, judging.noise_tree(r, z)))
        out.append(pairs)
    return out


def _worst_ratio(ex, expected, cases, outs) -> float:
    """Largest error / tolerance over all outputs of all cases (inf: wrong structure),
    against the closest of the ``expected`` answers."""
    best = float("inf")
    for option in expected:
        worst = 0.0
        for (r, z), out, case in zip(option, outs, cases):
            if out[0] != "ok":
                return float("inf")
            s = judging.as_updates(out[1], case, ex.updates_of)
            # compare with a tolerance 1e6 times tighter to see every error's size
            for m in judging.mismatches(r, s, ex.rtol * 1e-6, ex.atol * 1e-6):
                if m["reason"] != "values":
                    return float("inf")
                tol = judging.tolerance(m["ref"], ex.rtol, ex.atol, _leaf(z, m["path"]))
                worst = max(worst, m["max_abs"] / tol)
        best = min(best, worst)
    return best


def _leaf(tree, path):
    for p in path:
        if tree is None:
            return None
        tree = tree[1][p]
    return tree[1] if tree is not None else None


def case_sets(ex):
    yield "visible", judge.cases_for(ex, False)
    for student in STUDENTS:
        yield student, judge.cases_for(
            ex, True, seed=judge.hidden_seed(student, ex.assignment, SALT))


@pytest.mark.parametrize("key", KEYS, ids=["/".join(k) for k in KEYS])
def test_honest_pass_and_mistakes_fail_for_100_students(key):
    ex = reg.EXERCISES[key]
    fns = honest(key)
    honest_worst = {label: 0.0 for label, _ in fns}
    mistake_least = {m.name: float("inf") for m in ex.mistakes}
    for who, cases in case_sets(ex):
        expected = _expected(ex, cases, judge.references(ex, cases),
                             judge.float32_references(ex, cases),
                             [judging.outputs_of(fn, cases) for fn in ex.accepted])
        for label, fn in fns:
            ratio = _worst_ratio(ex, expected, cases, judging.outputs_of(fn, cases))
            honest_worst[label] = max(honest_worst[label], ratio)
            assert ratio <= 0.5, f"{label} fails for {who}: error {ratio:.3g} x tolerance"
        for m in ex.mistakes:
            ratio = _worst_ratio(ex, expected, cases, judging.outputs_of(m.fn, cases))
            mistake_least[m.name] = min(mistake_least[m.name], ratio)
            assert ratio >= MARGIN, f"{m.name!r} passes or nearly passes for {who} ({ratio:.3g})"
    print(f"\n{key[1]}: worst honest error / tolerance "
          + ", ".join(f"{k} {v:.2g}" for k, v in honest_worst.items()))
    print(f"{key[1]}: least mistake error / tolerance "
          + ", ".join(f"{k} {v:.3g}" for k, v in mistake_least.items()))


def test_a_real_student_style_float32_answer_gets_full_marks_through_the_judge():
    """The verdict path itself (not only the ratios): float32 rnn_bptt passes."""
    ex = reg.EXERCISES[("03_bptt", "rnn_bptt")]
    fn = judging.in_float32(ALTERNATIVES["rnn_bptt"][1][1])
    for who in STUDENTS[:5]:
        cases = judge.cases_for(ex, True, seed=judge.hidden_seed(who, "03_bptt", "s"))
        v = judge.judge_fn(ex, cases, fn, hidden=True)
        assert v.passed, v.message


def test_the_regrade_fingerprint_covers_the_judge_and_the_pointers(monkeypatch, tmp_path):
    """Changing the tolerance, the diagnosis, the registry, a pointed-to heading or the
    book's address regrades; editing the book's text elsewhere does not."""
    from grader import fingerprint as fp

    files = {p.resolve() for p in fp.fingerprint_files(REPO, "03_bptt")}
    for rel in ("course_lib/judging.py", "course_lib/checks.py", "grader/judge.py",
                "grader/cells.py", "grader/exercises/__init__.py",
                "grader/exercises/a03_bptt.py"):
        assert (REPO / rel).resolve() in files, rel
    assert not any(p.suffix == ".md" for p in files)
    root = tmp_path / "course"
    (root / "grader").mkdir(parents=True)
    before = fp.fingerprint(root, "03_bptt")
    assert fp.fingerprint(root, "03_bptt") == before
    monkeypatch.setattr(reg, "heading", lambda page, label: f"renamed {label}")
    renamed = fp.fingerprint(root, "03_bptt")
    assert renamed != before
    monkeypatch.setattr(reg, "course_url", lambda: "https://example.org/book")
    assert fp.fingerprint(root, "03_bptt") not in (before, renamed)