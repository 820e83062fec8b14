"""course_lib.activations: values, derivatives from the output, unknown names."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import activations
from strategies import seeds


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(["sigmoid", "tanh", "relu"]), seed=seeds,
       n=st.integers(1, 20))
def test_derivative_from_output_matches_central_differences(name, seed, n):
    act = activations.get(name)
    z = 3 * np.random.default_rng(seed).standard_normal(n)
    z = z[np.abs(z) > 1e-3]  # relu has no derivative at its kink
    eps = 1e-6
    numeric = (act.f(z + eps) - act.f(z - eps)) / (2 * eps)
    np.testing.assert_allclose(act.df(act.f(z)), numeric, rtol=1e-6, atol=1e-9)


def test_values():
    z = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(activations.sigmoid(z), 1 / (1 + np.exp(-z)), rtol=1e-15)
    np.testing.assert_array_equal(activations.tanh(z), np.tanh(z))
    np.testing.assert_array_equal(activations.relu(z), [0.0, 0.0, 3.0])
    np.testing.assert_array_equal(activations.relu_df(np.array([0.0, 0.5])), [0.0, 1.0])


def test_sigmoid_is_finite_and_silent_for_huge_inputs():
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # an overflow warning would fail an nbgrader cell
        s = activations.sigmoid(np.array([-1e4, -745.0, 0.0, 745.0, 1e4]))
    assert np.all(np.isfinite(s)) and s[0] == 0.0 and s[2] == 0.5 and s[-1] == 1.0
    assert activations.sigmoid(np.array([-40.0]))[0] == pytest.approx(np.exp(-40.0), rel=1e-12)


def test_get_returns_named_activation_and_rejects_unknown_names():
    assert activations.get("tanh").name == "tanh"
    assert activations.get(activations.get("relu")).name == "relu"
    with pytest.raises(ValueError, match="unknown activation 'gelu': choose one of 'relu', 'sigmoid', 'tanh'"):
        activations.get("gelu")
