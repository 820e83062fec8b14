"""course_lib.gradcheck: central differences are pure, accurate, and can fail."""

import numpy as np
import pytest

from course_lib.gradcheck import GradCheckReport, check_gradients, numerical_gradient, rel_error


def test_numerical_gradient_of_a_known_function():
    A = np.array([[1.0, 2.0], [3.0, 4.0]])
    x = np.array([0.5, -1.0])
    grad = numerical_gradient(lambda v: float(v @ A @ v), x)
    np.testing.assert_allclose(grad, (A + A.T) @ x, rtol=1e-9)


def test_inputs_are_never_mutated_and_f_sees_its_argument():
    params = {"a": np.array([1.0, 2.0]), "b": np.array([[3.0]])}
    before = {k: v.copy() for k, v in params.items()}
    seen = []

    def f(p):
        seen.append(p["a"].copy())
        p["a"][0] = 1e9  # a careless f that scribbles on its argument
        return float(np.sum(p["a"][1:] ** 2) + np.sum(p["b"] ** 3))

    grad = numerical_gradient(f, params)
    assert all(np.array_equal(params[k], before[k]) for k in params)
    np.testing.assert_allclose(grad["a"], [0.0, 4.0], atol=1e-8)
    np.testing.assert_allclose(grad["b"], [[27.0]], rtol=1e-8)
    # Every call saw a perturbed copy of the original values, never a scribbled one.
    assert all(abs(a[0] - 1.0) <= 1e-6 + 1e-15 for a in seen)


def test_rel_error():
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(np.array([1.0, 1e-12]), np.array([1.0, 2e-12])) == pytest.approx(1e-12)
    assert rel_error(np.array([2.0]), np.array([1.0])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"cannot compare shapes \(2,\) and \(3,\)"):
        rel_error(np.zeros(2), np.zeros(3))


def test_check_gradients_reports_per_parameter_and_catches_a_wrong_gradient():
    params = {"w": np.array([1.0, -2.0]), "b": np.array([0.5])}

    def f(p):
        return float(np.sum(p["w"] ** 2) + 3 * p["b"][0])

    good = check_gradients(f, params, {"w": 2 * params["w"], "b": np.array([3.0])})
    assert good.passed(1e-6) and set(good.errors) == {"w", "b"}
    bad = check_gradients(f, params, {"w": params["w"], "b": np.array([3.0])})
    assert not bad.passed(1e-6)
    assert bad.errors["w"] == pytest.approx(0.5, rel=1e-6) and bad.errors["b"] < 1e-8
    text = str(bad)
    assert "w" in text and "5.00e-01" in text


def test_report_formatting():
    report = GradCheckReport({"W_hh": 1.5e-9, "b_h": 2e-3})
    assert report.max_error == 2e-3
    assert str(report).splitlines() == ["param  rel. error", "W_hh   1.50e-09", "b_h    2.00e-03"]


def test_a_nan_error_fails_even_when_it_is_not_first():
    # Python's max() gives 1e-9 for max([1e-9, nan]): the NaN must not be skipped.
    report = GradCheckReport({"W": 1e-9, "b": float("nan")})
    assert not report.passed(1e-6) and np.isnan(report.max_error)


def test_a_nan_in_the_analytic_gradient_fails():
    params = {"w": np.array([1.0, -2.0]), "b": np.array([0.5])}
    report = check_gradients(lambda p: float(np.sum(p["w"] ** 2) + p["b"][0]), params,
                             {"w": 2 * params["w"], "b": np.array([np.nan])})
    assert not report.passed()


def test_check_gradients_names_a_wrong_shape_or_a_missing_key():
    params = {"W": np.ones((3, 2))}

    def f(p):
        return float(np.sum(p["W"] ** 2))

    with pytest.raises(ValueError, match=r"analytic\['W'\] has shape \(2, 3\), expected "
                                         r"\(3, 2\) \(the shape of params\['W'\]: transposed\?\)"):
        check_gradients(f, params, {"W": np.ones((2, 3))})
    with pytest.raises(ValueError, match=r"analytic has no gradient for 'W' \(it has \['w'\]\)"):
        check_gradients(f, params, {"w": np.ones((3, 2))})
