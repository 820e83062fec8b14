"""course_lib.optim: SGD, momentum (the book's sign convention), norm clipping."""

import numpy as np
import pytest

from course_lib import mlp, optim


def test_sgd_updates_in_place():
    params = {"w": np.array([1.0, 2.0])}
    w = params["w"]
    out = optim.SGD(0.1).step(params, {"w": np.array([10.0, -10.0])})
    assert out is params and params["w"] is w
    np.testing.assert_allclose(w, [0.0, 3.0])


def test_momentum_follows_delta_w_rule():
    params = {"w": np.array([1.0])}
    opt = optim.Momentum(lr=0.5, momentum=0.9)
    opt.step(params, {"w": np.array([2.0])})  # Delta w = -1
    opt.step(params, {"w": np.array([1.0])})  # Delta w = -0.5 + 0.9 * -1 = -1.4
    np.testing.assert_allclose(params["w"], [1.0 - 1.0 - 1.4])


def test_momentum_reproduces_the_mlp_momentum_step():
    ex = mlp.worked_example()
    params = {str(i): W.copy() for i, W in enumerate(ex["weights"])}
    opt = optim.Momentum(ex["lr"], ex["momentum"])
    weights, updates = ex["weights"], None
    for _ in range(3):
        _, outputs = mlp.forward(weights, ex["x"])
        _, grads = mlp.backward(weights, outputs, ex["target"])
        weights, updates = mlp.momentum_step(weights, grads, ex["lr"], ex["momentum"], updates)
        opt.step(params, {str(i): g for i, g in enumerate(grads)})
    for i, W in enumerate(weights):
        np.testing.assert_allclose(params[str(i)], W, rtol=1e-15)


def test_clip_grad_norm():
    grads = {"a": np.array([3.0]), "b": np.array([[4.0]])}
    clipped, norm = optim.clip_grad_norm(grads, 1.0)
    assert norm == 5.0
    np.testing.assert_allclose(clipped["a"], [0.6])
    np.testing.assert_allclose(clipped["b"], [[0.8]])
    assert grads["a"][0] == 3.0  # not modified
    unchanged, norm = optim.clip_grad_norm(grads, 10.0)
    assert norm == 5.0 and np.array_equal(unchanged["a"], grads["a"])
    zero, norm = optim.clip_grad_norm({"a": np.zeros(2)}, 1.0)
    assert norm == 0.0 and np.array_equal(zero["a"], np.zeros(2))
    with pytest.raises(ValueError, match="max_norm must be positive, got 0"):
        optim.clip_grad_norm(grads, 0)


@pytest.mark.parametrize("make", [lambda: optim.SGD(0.1), lambda: optim.Momentum(0.1, 0.9)])
@pytest.mark.parametrize("grads,match", [
    ({"W": np.ones((3, 2)), "b": np.ones(3)},
     r"the gradient of W has shape \(3, 2\), expected \(2, 3\) \(the shape of W: transposed\?\)"),
    ({"W": np.ones((2, 3)), "b": np.ones(1)},
     r"the gradient of b has shape \(1,\), expected \(3,\)"),
    ({"W": np.ones((2, 3))}, r"grads has no gradient for 'b' \(it has \['W'\]\)"),
    ({"W": np.ones((2, 3)), "b": np.array([1.0, np.nan, 1.0])},
     r"the gradient of b is not finite \(NaN or inf\): lower the learning rate"),
])
def test_optimizers_reject_a_bad_gradient_and_leave_params_alone(make, grads, match):
    params = {"W": np.zeros((2, 3)), "b": np.zeros(3)}
    with pytest.raises(ValueError, match=match):
        make().step(params, grads)
    assert not params["W"].any() and not params["b"].any()


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_clip_grad_norm_rejects_a_non_finite_gradient(bad):
    # Before: inf gave NaN (inf * 0), and NaN passed unchanged.
    grads = {"W": np.ones((2, 2)), "b": np.array([1.0, bad])}
    with pytest.raises(ValueError, match="the gradient of b holds NaN or inf: clipping cannot"):
        optim.clip_grad_norm(grads, 1.0)
