"""course_lib.losses: softmax family, cross-entropy and MSE gradients, the BPTT tutorial's
example, stability at +-1e4, bad inputs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import losses
from course_lib.gradcheck import check_gradients, numerical_gradient, rel_error
from strategies import seeds

TOL = 1e-6


def test_the_bptt_tutorials_softmax_example():
    # y = [0.8, 0.2] and the true class is the first (the BPTT tutorial's "C = 1", 1-based).
    y = np.array([0.8, 0.2])
    loss, dv = losses.cross_entropy(np.log(y)[None, :], np.array([0]))
    np.testing.assert_allclose(dv[0], [-0.2, 0.2], rtol=1e-12)
    assert loss == pytest.approx(-np.log(0.8), rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(N=st.integers(1, 5), C=st.integers(1, 5), seed=seeds)
def test_cross_entropy_gradient_matches_central_differences(N, C, seed):
    rng = np.random.default_rng(seed)
    v = 2 * rng.standard_normal((N, C))
    targets = rng.integers(0, C, N)
    loss, dv = losses.cross_entropy(v, targets)
    report = check_gradients(lambda p: losses.cross_entropy(p["v"], targets)[0], {"v": v}, {"v": dv})
    assert report.passed(TOL), str(report)
    np.testing.assert_allclose(dv.sum(axis=1), 0.0, atol=1e-15)


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=seeds)
def test_mse_gradient_matches_central_differences(shape, seed):
    rng = np.random.default_rng(seed)
    y_hat, y = rng.standard_normal(shape), rng.standard_normal(shape)
    loss, dy_hat = losses.mse(y_hat, y)
    assert loss == pytest.approx(np.mean((y_hat - y) ** 2), rel=1e-14)
    report = check_gradients(lambda p: losses.mse(p["y_hat"], y)[0], {"y_hat": y_hat},
                             {"y_hat": dy_hat})
    assert report.passed(TOL), str(report)


@settings(max_examples=20, deadline=None)
@given(C=st.integers(1, 6), seed=seeds)
def test_softmax_jacobian_matches_central_differences(C, seed):
    v = np.random.default_rng(seed).standard_normal(C)
    J = losses.softmax_jacobian(losses.softmax(v))
    numeric = np.stack(
        [numerical_gradient(lambda u: losses.softmax(u)[i], v) for i in range(C)])
    assert J.shape == (C, C)
    assert rel_error(J, numeric) < TOL


def test_softmax_and_log_softmax_agree_and_sum_to_one():
    v = np.random.default_rng(0).standard_normal((4, 5))
    p = losses.softmax(v)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(losses.log_softmax(v), np.log(p), rtol=1e-13)
    np.testing.assert_allclose(losses.softmax(v.T, axis=0), p.T, rtol=1e-15)


def test_finite_for_logits_of_plus_minus_1e4():
    v = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4 - 1.0, -1e4]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = losses.softmax(v)
        logp = losses.log_softmax(v)
        loss, dv = losses.cross_entropy(v, np.array([1, 0, 1]))
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(logp)) and np.all(np.isfinite(dv))
    np.testing.assert_allclose(p[1], 1 / 3, rtol=1e-15)
    assert logp[0, 1] == -2e4
    # Row 1 predicts class 0 with certainty but the target is 1: loss 2e4 / 3 rows.
    assert np.isfinite(loss) and loss == pytest.approx((2e4 + np.log(3) + 1 + np.log1p(np.exp(-1))) / 3)


def test_cross_entropy_bad_inputs():
    v = np.zeros((3, 4))
    with pytest.raises(TypeError, match="integer class indices.*float64"):
        losses.cross_entropy(v, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"targets has shape \(2,\), expected \(3,\)"):
        losses.cross_entropy(v, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 4\).*from -1 to 2"):
        losses.cross_entropy(v, np.array([0, -1, 2]))
    with pytest.raises(ValueError, match=r"v has shape \(4,\), expected \(any, any\) \(N, C\)"):
        losses.cross_entropy(np.zeros(4), np.array([0]))
    v[1, 2] = np.nan
    with pytest.raises(ValueError, match="v contains 1 NaN or inf"):
        losses.cross_entropy(v, np.array([0, 1, 2]))


def test_mse_bad_inputs():
    with pytest.raises(ValueError, match=r"y has shape \(3,\), expected \(2,\)"):
        losses.mse(np.zeros(2), np.zeros(3))
    with pytest.raises(TypeError, match="float array of target values"):
        losses.mse(np.zeros(2), np.array([1, 2]))
    with pytest.raises(ValueError, match="y_hat contains 1 NaN or inf"):
        losses.mse(np.array([0.0, np.inf]), np.zeros(2))
    with pytest.raises(TypeError, match="y_hat must be numeric, got dtype <U1"):
        losses.mse(np.array(["a"]), np.zeros(1))


def test_softmax_jacobian_wants_one_vector():
    with pytest.raises(ValueError, match=r"y_hat has shape \(2, 2\), expected \(any,\)"):
        losses.softmax_jacobian(np.full((2, 2), 0.5))


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="unknown loss 'nll': choose one of 'cross_entropy', 'mse'"):
        losses.check_loss_name("nll")
