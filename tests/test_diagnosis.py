"""Diagnosis by what the answer is: a realistic class of wrong functions
(tests/fixtures/wrong/wrong_answers.py, written as students write them, not as the catalogue's
edits) is judged without a kernel; every one must fail, and at least 80% must be named
(a catalogued mistake, a transform of the right answer given as a guess, or a modified
input). The named fraction is printed."""
from __future__ import annotations

import sys
from pathlib import Path

from grader import exercises as reg
from grader import judge

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures" / "wrong"))
from wrong_answers import WRONG  # noqa: E402

# a fixed salt in place of the course's secret one (grader/secret/): any salt
# draws a fresh set of hidden cases per student
SALT = "test-salt-" + "0" * 32


def verdict_of(assignment, name, fn):
    """What the student sees first: the visible verdict, else a hidden one."""
    ex = reg.EXERCISES[(assignment, name)]
    v = judge.judge_fn(ex, judge.cases_for(ex, False), fn)
    if v.passed:
        v = judge.judge_fn(ex, judge.cases_for(ex, True, seed=judge.hidden_seed(
            "ada", assignment, SALT)), fn, hidden=True)
    return v


def named(v) -> bool:
    return bool(v.mistake) or v.kind == "mutated"


def test_a_realistic_class_is_named():
    results = [(a, n, what, verdict_of(a, n, fn)) for a, n, what, fn in WRONG]
    unnamed = []
    for a, n, what, v in results:
        assert not v.passed, f"{n} ({what}) passes"
        if not named(v):
            unnamed.append(f"{n} ({what}): {v.message[:160]}")
    fraction = 1 - len(unnamed) / len(results)
    print(f"\nnamed {len(results) - len(unnamed)} of {len(results)} wrong functions "
          f"({fraction:.0%}); not named:\n  " + "\n  ".join(unnamed))
    assert fraction >= 0.8


def test_guesses_say_how_sure_they_are():
    for a, n, what, fn in WRONG:
        v = verdict_of(a, n, fn)
        if v.confidence == "guess":
            assert "a guess" in v.message
        if v.confidence == "likely":
            assert "Probably:" in v.message


def test_the_source_slip_is_named_as_such():
    """A student who copies the tutorial's tanh' formula gets that mistake's name."""
    for a, n, what, fn in WRONG:
        if what == "the source's tanh' slip":
            assert verdict_of(a, n, fn).mistake == "tanh derivative taken at the wrong step"
