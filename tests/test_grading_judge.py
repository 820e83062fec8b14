"""The judge, the record format and the verdict step's record reader (no kernels)."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from course_lib import checks
from grader import cells, judge
from helpers import DEMO, demo_registry


@pytest.fixture(scope="module")
def reg():
    """The demo registry, also as the grader's registry (judge.expected_data reads it)
    for this module's tests, restored afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_EXERCISES_MODULE", "demo_registry")
        mp.syspath_prepend(str(DEMO))
        yield demo_registry()


def _judge(reg, name, fn, hidden=False, assignment="00_demo"):
    ex = reg.EXERCISES[(assignment, name)]
    cases = judge.cases_for(ex, hidden, seed=7)
    return judge.judge_record(ex, cases, checks.run_cases(fn, cases), hidden=hidden)


def test_reference_passes_visible_and_hidden(reg):
    for (a, name), ex in reg.EXERCISES.items():
        for hidden in (False, True):
            v = _judge(reg, name, ex.reference, hidden, assignment=a)
            assert v.passed and v.kind == "pass", v.message


def test_each_catalogued_mistake_is_named(reg):
    """Every mistake of the demo and of the course registry, on visible and hidden cases."""
    for (a, fn, mistake), _ in reg.MISTAKE_SOURCES.items():
        ex = reg.EXERCISES[(a, fn)]
        wrong = next(m for m in ex.mistakes if m.name == mistake)
        for hidden in (False, True):
            v = _judge(reg, fn, wrong.fn, hidden, assignment=a)
            assert not v.passed and v.mistake == mistake, (a, fn, hidden, v.message)
            assert f"Looks like: {mistake}" in v.message and "Read: " in v.message


def test_unknown_error_names_output_shape_and_size(reg):
    v = _judge(reg, "affine", lambda x, w, b: x @ w.T + b + 0.5)
    assert v.kind == "wrong" and "max abs error 0.5" in v.message and "(2, 2)" in v.message
    v = _judge(reg, "affine", lambda x, w, b: (x @ w.T + b)[:1])
    assert "expected (2, 2), got (1, 2)" in v.message
    v = _judge(reg, "softmax_rows", lambda v: np.exp(v) / np.exp(v).sum(1, keepdims=True))
    assert v.kind == "wrong" and "NaN or inf" in v.message


def test_exceptions_and_stubs(reg):
    def stub(x, w, b):
        raise NotImplementedError

    assert _judge(reg, "affine", stub).kind == "not_implemented"

    def broken(x, w, b):
        raise ValueError("shapes (2,2) and (3,)")

    v = _judge(reg, "affine", broken)
    assert v.kind == "raised" and "ValueError: shapes" in v.message


def test_objects_that_claim_equality_fail(reg):
    class Liar:
        def __eq__(self, other):
            return True

        __hash__ = object.__hash__

    v = _judge(reg, "affine", lambda x, w, b: Liar())
    assert not v.passed and "Liar" in v.message
    v = _judge(reg, "affine", lambda x, w, b: None)
    assert not v.passed


def test_structures_tuples_and_dicts_compare_by_name():
    class Ex:
        name, rtol, atol, section, mistakes = "f", 1e-6, 1e-8, "Ch. 3", ()
        output_names = ("loss", "grads")

        @staticmethod
        def reference(x):
            return float(x.sum()), {"dW": 2 * x, "db": x[0]}

    cases = [{"x": np.ones((2, 3))}]
    ok = judge.judge_record(Ex, cases, checks.run_cases(Ex.reference, cases))
    assert ok.passed
    bad = judge.judge_record(Ex, cases, checks.run_cases(
        lambda x: (float(x.sum()), {"dW": 3 * x, "db": x[0]}), cases))
    assert "grads['dW']" in bad.message
    missing = judge.judge_record(Ex, cases, checks.run_cases(
        lambda x: (float(x.sum()), {"dW": 2 * x}), cases))
    assert "grads['db'] is missing" in missing.message
    as_list = judge.judge_record(Ex, cases, checks.run_cases(
        lambda x: [np.float64(x.sum()), {"dW": 2 * x, "db": x[0]}], cases))
    assert as_list.passed


def test_a_function_that_modifies_its_input_fails_naming_it(reg):
    def mutating(x, w, b):
        out = x @ w.T + b
        w[...] = 0
        return out

    v = _judge(reg, "affine", mutating)
    assert not v.passed and v.kind == "mutated" and "changed its input w" in v.message
    assert "work on a copy" in v.message


def test_nested_inputs_are_compared_too():
    changed = checks._changed({"W": np.ones(2), "b": [np.zeros(1)]},
                              {"W": np.ones(2), "b": [np.ones(1)]}, "params")
    assert changed == ["params['b'][0]"]


def test_calls_are_positional(reg):
    """A correct softmax whose parameter is not called `v` passes."""
    def softmax_rows(logits):
        return reg.softmax_rows(logits)

    assert _judge(reg, "softmax_rows", softmax_rows).passed


def test_not_implemented_keeps_the_message_and_the_mode():
    from grader import exercises as course

    ex = course.EXERCISES[("03_bptt", "rnn_bptt")]

    def half(params, xs, targets, h0, mode):
        if mode == "many_to_one":
            raise NotImplementedError("many_to_one: TODO")
        return ex.reference(params, xs, targets, h0, mode)

    v = judge.judge_fn(ex, judge.cases_for(ex, False), half)
    assert v.kind == "not_implemented"
    assert "many_to_one: TODO" in v.message and "mode='many_to_one'" in v.message


def test_scalars_are_printed_as_numbers_and_hidden_cases_show_no_values():
    from grader import exercises as course

    ex = course.EXERCISES[("02_softmax", "cross_entropy")]

    def loss_off(v, targets):
        loss, dv = ex.reference(v, targets)
        return loss + 0.125, dv

    visible = judge.judge_fn(ex, judge.cases_for(ex, False), loss_off)
    assert "loss is" in visible.message and "expected" in visible.message
    assert "shape (1,)" not in visible.message and "(1,)" not in visible.message
    cases = judge.cases_for(ex, True, seed=3)
    hidden = judge.judge_fn(ex, cases, loss_off, hidden=True)
    assert "a hidden case (N=" in hidden.message and "hidden hidden" not in hidden.message
    assert "loss is wrong (a number): off by" in hidden.message
    expected = judge.references(ex, cases)
    for ref in expected:  # no expected value of a hidden case is printed
        loss = ref[1][1][0][1]
        assert f"{float(loss):.4g}" not in hidden.message


def test_a_guess_from_the_numbers_says_so(reg):
    """A wrong answer that is no catalogued mistake but a transform of the right one."""
    v = _judge(reg, "affine", lambda x, w, b: -(x @ w.T + b))
    assert v.kind == "wrong" and v.confidence == "guess"
    assert "opposite sign" in v.message and "a guess" in v.message


def test_hidden_seed_is_deterministic_and_per_student():
    a = judge.hidden_seed("ada", "03_bptt", "salt")
    assert a == judge.hidden_seed("ada", "03_bptt", "salt")
    assert a != judge.hidden_seed("bob", "03_bptt", "salt")
    assert a != judge.hidden_seed("ada", "03_bptt", "other salt")


def test_cases_round_trip():
    cases = [{"params": {"W": np.eye(2), "b": np.zeros(2)}, "xs": np.arange(6.0).reshape(3, 2),
              "targets": np.array([0, 1, 1]), "lr": 0.1, "k1": 3, "activation": "tanh",
              "h0": None, "pair": (1, 2.5)}]
    back = checks.decode_cases(checks.encode_cases(cases))
    assert back[0]["targets"].dtype.kind == "i" and back[0]["lr"] == 0.1
    assert back[0]["activation"] == "tanh" and back[0]["h0"] is None
    assert back[0]["pair"] == (1, 2.5)
    np.testing.assert_array_equal(back[0]["params"]["W"], np.eye(2))


def test_record_reader_fails_closed(tmp_path, reg):
    ex = reg.EXERCISES[("00_demo", "affine")]
    cases = ex.visible_cases()
    good = checks.run_cases(reg.affine, cases)
    (tmp_path / "good.npz").write_bytes(good)
    assert cells.read_record(str(tmp_path), "good.npz", 1 << 20) == good
    # a symlink planted where the record should be
    (tmp_path / "link.npz").symlink_to(tmp_path / "good.npz")
    assert cells.read_record(str(tmp_path), "link.npz", 1 << 20) is None
    # a directory, a fifo, an oversized file, a missing file
    (tmp_path / "dir.npz").mkdir()
    assert cells.read_record(str(tmp_path), "dir.npz", 1 << 20) is None
    os.mkfifo(tmp_path / "fifo.npz")
    assert cells.read_record(str(tmp_path), "fifo.npz", 1 << 20) is None
    assert cells.read_record(str(tmp_path), "good.npz", 10) is None
    assert cells.read_record(str(tmp_path), "none.npz", 1 << 20) is None
    # garbage, a pickled object array, a record for the wrong number of cases
    assert judge.judge_record(ex, cases, b"not a zip").kind == "bad_record"
    import io

    buf = io.BytesIO()
    np.savez(buf, meta=np.array('{"results": []}'), x_o0=np.array([object()], dtype=object))
    assert judge.judge_record(ex, cases, buf.getvalue()).kind == "bad_record"
    assert judge.judge_record(ex, cases + cases, good).kind == "bad_record"
    assert judge.judge_record(ex, cases, None).kind == "no_record"


def test_check_in_student_mode_raises_with_diagnosis(reg, monkeypatch, capsys, tmp_path):
    """Student mode judges with the data file alone (no grader import)."""
    (tmp_path / "00_demo.npz").write_bytes(judge.expected_data("00_demo"))
    monkeypatch.setenv("COURSE_CHECKS_DATA", str(tmp_path))
    monkeypatch.delenv("COURSE_RECORD_DIR", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    checks.check("00_demo", "affine", reg.affine)
    assert "affine: passed" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="Looks like: bias forgotten"):
        checks.check("00_demo", "affine", lambda x, w, b: x @ w.T)


def test_a_students_own_check_is_named(reg, monkeypatch, capsys, tmp_path):
    (tmp_path / "00_demo.npz").write_bytes(judge.expected_data("00_demo"))
    monkeypatch.setenv("COURSE_CHECKS_DATA", str(tmp_path))
    monkeypatch.delenv("COURSE_RECORD_DIR", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    namespace = {"_course_check": checks.check, "affine": reg.affine,
                 "check": lambda f, x: 0.0}  # a finite-difference checker of their own
    exec('_course_check("00_demo", "affine", affine)', namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "affine: passed" in out and "defines its own `check`" in out


def test_course_lib_does_not_import_the_grader():
    import subprocess

    code = ("import sys, course_lib.checks, course_lib.judging; "
            "print([m for m in sys.modules if m == 'grader' or m.startswith('grader.')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_check_refuses_to_decide_under_autograde_without_config(reg, monkeypatch):
    monkeypatch.delenv("COURSE_RECORD_DIR", raising=False)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(AssertionError, match="without the course's grading configuration"):
        checks.check("00_demo", "affine", reg.affine)


def test_check_in_grading_mode_only_records(reg, monkeypatch, tmp_path, capsys):
    ex = reg.EXERCISES[("00_demo", "affine")]
    cases_dir, record_dir = tmp_path / "cases", tmp_path / "records"
    cases_dir.mkdir()
    record_dir.mkdir()
    cases = ex.visible_cases()
    (cases_dir / checks.cases_name("00_demo", "affine", False)).write_bytes(
        checks.encode_cases(cases))
    # the grader creates the (empty) record files; the kernel only fills them in place
    earlier, record = (record_dir / checks.record_name(t, False) for t in ("tok0", "tok123"))
    earlier.touch()
    record.touch()
    monkeypatch.setenv("COURSE_CASES_DIR", str(cases_dir))
    monkeypatch.setenv("COURSE_RECORD_DIR", str(record_dir))
    monkeypatch.setattr(checks, "_cell", {"token": None, "count": None})
    cell = {"number": 3}  # the running cell's number, as IPython counts them
    monkeypatch.setattr(checks, "_execution_count", lambda: cell["number"])
    checks.check("00_demo", "affine", reg.affine)  # no test cell token: nothing recorded
    checks.enter_test_cell("tok0")  # a test cell, number 3
    cell["number"] = 4  # a cell after it: the token is not its own
    checks.check("00_demo", "affine", reg.affine)
    assert earlier.stat().st_size == 0 and record.stat().st_size == 0
    assert capsys.readouterr().out.count("outside its test cell") == 2
    cell["number"] = 5
    checks.enter_test_cell("tok123")  # the next test cell, number 5
    checks.check("00_demo", "affine", lambda x, w, b: x @ w.T)  # wrong, but no verdict here
    err = capsys.readouterr().err
    assert "the grader decides" in err  # stderr: scores 0 unless the verdict step rewrites
    checks.check("00_demo", "affine", reg.affine)  # a second call cannot replace the record
    assert judge.judge_record(ex, cases, record.read_bytes()).mistake == "bias forgotten"
