"""course_lib.rnn: step and sequence gradients against central differences and
PyTorch autograd, the problem book's ReLU worked example, state carry, bad inputs."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings

from course_lib import rnn
from course_lib.gradcheck import check_gradients, numerical_gradient, rel_error
from strategies import activation_names, make_problem, rnn_problems, rnn_sizes, seeds

import torch_rnn

TOL = 1e-6
PARAMS = ("W_xh", "W_hh", "b_h", "W_hy", "b_y")


@settings(max_examples=25, deadline=None)
@given(sizes=rnn_sizes(), seed=seeds, activation=activation_names)
def test_step_backward_matches_central_differences(sizes, seed, activation):
    params, xs, _, h_prev = make_problem(sizes, seed)
    x_t = xs[0]
    # A random linear read-out of h_t makes a scalar whose gradient wrt h_t is R.
    R = np.random.default_rng(seed).standard_normal(h_prev.shape)

    def scalar(inputs):
        h_t, _ = rnn.step_forward(inputs["x_t"], inputs["h_prev"], inputs, activation)
        return float(np.sum(R * h_t))

    inputs = {"x_t": x_t, "h_prev": h_prev, "W_xh": params["W_xh"], "W_hh": params["W_hh"],
              "b_h": params["b_h"]}
    _, cache = rnn.step_forward(x_t, h_prev, params, activation)
    dx_t, dh_prev, step_grads = rnn.step_backward(R, cache)
    analytic = {"x_t": dx_t, "h_prev": dh_prev, **step_grads}
    report = check_gradients(scalar, inputs, analytic)
    assert report.passed(TOL), str(report)


@settings(max_examples=40, deadline=None)
@given(problem=rnn_problems())
def test_bptt_matches_central_differences(problem):
    params, xs, targets, h0, activation, loss, mode = problem
    value, grads, _ = rnn.bptt(params, xs, targets, h0, activation, loss, mode)

    def loss_of(p):
        return rnn.bptt(p, xs, targets, h0, activation, loss, mode)[0]

    assert value == loss_of(params)
    step = 1e-6
    numeric = numerical_gradient(loss_of, params, eps=step)
    # A central difference carries rounding noise of about machine epsilon * |loss| / step
    # (~1e-10 here): a gradient that small (e.g. W_hh behind a W_hy of 0.009) cannot be
    # checked to TOL relative to itself, only to within that noise.
    noise = 10 * np.finfo(float).eps * max(1.0, abs(value)) / step
    for name in params:
        err = np.max(np.abs(grads[name] - numeric[name]))
        scale = max(np.max(np.abs(grads[name])), np.max(np.abs(numeric[name])))
        assert err <= TOL * scale + noise, (name, err, scale, rel_error(grads[name], numeric[name]))


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("mode", ["many_to_many", "many_to_one"])
def test_bptt_central_differences_with_every_size_one(activation, loss, mode):
    sizes = dict(T=1, B=1, D=1, H=1, C=2)
    params, xs, targets, h0 = make_problem(sizes, seed=1, loss=loss, mode=mode)
    _, grads, _ = rnn.bptt(params, xs, targets, h0, activation, loss, mode)
    report = check_gradients(
        lambda p: rnn.bptt(p, xs, targets, h0, activation, loss, mode)[0], params, grads)
    assert report.passed(TOL), str(report)


def torch_bptt(params, xs, targets, h0, activation, loss, mode):
    """The same computation in PyTorch (float64), differentiated by autograd."""
    P = torch_rnn.leaves(params)
    hs = torch_rnn.unroll(P, xs, torch.tensor(h0), activation)
    vs = [torch_rnn.output(P, h) for h in hs]
    v = torch.stack(vs) if mode == "many_to_many" else vs[-1]
    L = torch_rnn.loss(v, targets, loss)
    L.backward()
    return L.item(), torch_rnn.grads(P), hs[-1].detach().numpy()


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("mode", ["many_to_many", "many_to_one"])
@pytest.mark.parametrize("T,B,D,H,C", [(1, 1, 1, 1, 1), (7, 3, 4, 5, 3), (20, 2, 3, 6, 4)])
def test_bptt_matches_torch_autograd(activation, loss, mode, T, B, D, H, C):
    sizes = dict(T=T, B=B, D=D, H=H, C=C)
    params, xs, targets, h0 = make_problem(sizes, seed=T * 100 + H, loss=loss, mode=mode)
    value, grads, h_last = rnn.bptt(params, xs, targets, h0, activation, loss, mode)
    t_value, t_grads, t_h_last = torch_bptt(params, xs, targets, h0, activation, loss, mode)
    assert value == pytest.approx(t_value, rel=1e-12)
    for k in PARAMS:
        assert grads[k].shape == params[k].shape
        assert rel_error(grads[k], t_grads[k]) < 1e-10, k
    np.testing.assert_allclose(h_last, t_h_last, rtol=1e-12, atol=1e-14)


@settings(max_examples=15, deadline=None)
@given(problem=rnn_problems(max_T=8))
def test_bptt_matches_torch_on_random_problems(problem):
    params, xs, targets, h0, activation, loss, mode = problem
    _, grads, _ = rnn.bptt(params, xs, targets, h0, activation, loss, mode)
    _, t_grads, _ = torch_bptt(params, xs, targets, h0, activation, loss, mode)
    for k in PARAMS:
        assert rel_error(grads[k], t_grads[k]) < 1e-10, k


def test_step_functions_compose_to_forward_and_bptt():
    params, xs, targets, h0 = make_problem(dict(T=6, B=3, D=2, H=4, C=3), seed=5, loss="mse")
    hs, vs = rnn.forward(params, xs, h0)
    h, caches = h0, []
    for t, x_t in enumerate(xs):
        h, cache = rnn.step_forward(x_t, h, params)
        caches.append(cache)
        np.testing.assert_allclose(h, hs[t + 1], rtol=1e-14)
    # The same backward pass step by step, as the book writes it.
    _, dvs = rnn.loss_and_grad(vs, targets, "mse")
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    dh_next = np.zeros_like(h0)
    for t in reversed(range(len(xs))):
        grads["W_hy"] += dvs[t].T @ hs[t + 1]
        grads["b_y"] += dvs[t].sum(axis=0)
        _, dh_next, step_grads = rnn.step_backward(dvs[t] @ params["W_hy"] + dh_next, caches[t])
        for k, g in step_grads.items():
            grads[k] += g
    _, bptt_grads, _ = rnn.bptt(params, xs, targets, h0, loss="mse")
    for k in PARAMS:
        np.testing.assert_allclose(bptt_grads[k], grads[k], rtol=1e-12, atol=1e-15)


def relu_example():
    """The ReLU exercise of the Russian problem book (ulyankin_masha_book): all weights
    0.5, no biases, h_0 = 0, sequence y = (0, 1, -1, 2); the input at step t is y_{t-1}
    and the target is y_t."""
    params = {"W_xh": np.array([[0.5]]), "W_hh": np.array([[0.5]]), "b_h": np.zeros(1),
              "W_hy": np.array([[0.5]]), "b_y": np.zeros(1)}
    y = np.array([0.0, 1.0, -1.0, 2.0])
    return params, y[:-1].reshape(3, 1, 1), y[1:].reshape(3, 1, 1)


def test_relu_worked_example_forward_has_the_corrected_numbers():
    params, xs, targets = relu_example()
    hs, vs = rnn.forward(params, xs, activation="relu")
    np.testing.assert_array_equal(hs[1:].ravel(), [0.0, 0.5, 0.0])
    np.testing.assert_array_equal(vs.ravel(), [0.0, 0.25, 0.0])
    np.testing.assert_array_equal(((vs - targets) ** 2).ravel(), [1.0, 1.5625, 4.0])
    # The source's table (h_3 = 0.375, y_hat_3 = 0.1875, L_3 = 3.285) is not what the cell computes.
    assert hs[3, 0, 0] != 0.375
    loss, grads, h_last = rnn.bptt(params, xs, targets, activation="relu", loss="mse")
    assert loss == pytest.approx((1 + 1.5625 + 4) / 3, rel=1e-15)
    assert h_last.ravel().tolist() == [0.0]
    t_loss, t_grads, _ = torch_bptt(params, xs, targets, np.zeros((1, 1)), "relu", "mse",
                                    "many_to_many")
    for k in PARAMS:
        np.testing.assert_allclose(grads[k], t_grads[k], rtol=1e-14)


def test_relu_example_input_weight_needs_backprop_through_time():
    # The problem book claims dL/dv needs no BPTT. With h_1 > 0 (a bias of 0.1 on h) v enters
    # h_3 through h_2 as well, and stopping at one step gives a different gradient.
    params, xs, targets = relu_example()
    params["b_h"] = np.array([0.1])
    xs = xs + 0.0
    xs[2] = 1.0  # keep h_3 positive so step 3 passes gradient to h_2
    _, grads, _ = rnn.bptt(params, xs, targets, activation="relu", loss="mse")
    hs, vs = rnn.forward(params, xs, activation="relu")
    _, dvs = rnn.loss_and_grad(vs, targets, "mse")
    one_step = sum(
        ((dvs[t] @ params["W_hy"]) * (hs[t + 1] > 0)).T @ xs[t] for t in range(3)
    )
    assert abs(grads["W_xh"][0, 0] - one_step[0, 0]) > 1e-3


def test_forward_shapes_and_default_h0():
    params = rnn.init_params(3, 4, 2, seed=1)
    xs = np.random.default_rng(0).standard_normal((5, 6, 3))
    hs, vs = rnn.forward(params, xs)
    assert hs.shape == (6, 6, 4) and vs.shape == (5, 6, 2)
    np.testing.assert_array_equal(hs[0], np.zeros((6, 4)))


def test_init_params_shapes_dtype_seed_and_scale():
    p = rnn.init_params(3, 4, 2, seed=7)
    assert {k: v.shape for k, v in p.items()} == {
        "W_xh": (4, 3), "W_hh": (4, 4), "b_h": (4,), "W_hy": (2, 4), "b_y": (2,)}
    assert all(v.dtype == np.float64 for v in p.values())
    q = rnn.init_params(3, 4, 2, seed=7)
    assert all(np.array_equal(p[k], q[k]) for k in p)
    assert not np.array_equal(p["W_hh"], rnn.init_params(3, 4, 2, seed=8)["W_hh"])
    big = rnn.init_params(50, 400, 2, seed=0, scale=0.01)
    assert np.std(big["W_hh"]) == pytest.approx(0.01, rel=0.02)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_h_last_carries_the_state_to_the_next_call(activation):
    params, xs, targets, h0 = make_problem(dict(T=8, B=2, D=3, H=4, C=3), seed=3)
    _, _, h_mid = rnn.bptt(params, xs[:5], targets[:5], h0, activation)
    _, _, h_end = rnn.bptt(params, xs[5:], targets[5:], h_mid, activation)
    hs, _ = rnn.forward(params, xs, h0, activation)
    np.testing.assert_allclose(h_mid, hs[5], rtol=1e-14)
    np.testing.assert_allclose(h_end, hs[-1], rtol=1e-14)


def test_bptt_does_not_modify_its_inputs():
    params, xs, targets, h0 = make_problem(dict(T=4, B=2, D=3, H=4, C=3), seed=9)
    copies = [{k: v.copy() for k, v in params.items()}, xs.copy(), targets.copy(), h0.copy()]
    rnn.bptt(params, xs, targets, h0)
    assert all(np.array_equal(params[k], copies[0][k]) for k in params)
    assert np.array_equal(xs, copies[1]) and np.array_equal(targets, copies[2])
    assert np.array_equal(h0, copies[3])


def torch_hidden_grad_norms(params, xs, target, h0, activation):
    P = torch_rnn.leaves(params, requires_grad=False)
    h0 = torch.tensor(h0, requires_grad=True)
    hs = torch_rnn.unroll(P, xs, h0, activation)
    for h in hs:
        h.retain_grad()
    torch_rnn.loss(torch_rnn.output(P, hs[-1]), target).backward()
    return np.array([float(torch.linalg.norm(h.grad)) for h in [h0, *hs]])


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_hidden_grad_norms_match_torch(activation):
    params, xs, targets, h0 = make_problem(dict(T=12, B=3, D=2, H=5, C=4), seed=11,
                                           mode="many_to_one")
    norms = rnn.hidden_grad_norms(params, xs, targets, h0, activation)
    assert norms.shape == (13,)
    np.testing.assert_allclose(norms, torch_hidden_grad_norms(params, xs, targets, h0, activation),
                               rtol=1e-12, atol=1e-300)


def test_hidden_grad_norms_vanish_for_small_recurrent_weights():
    params, xs, targets, h0 = make_problem(dict(T=30, B=2, D=2, H=8, C=3), seed=2,
                                           mode="many_to_one")
    params["W_hh"] *= 0.1
    norms = rnn.hidden_grad_norms(params, xs, targets, h0)
    assert norms[0] < 1e-20 * norms[-1]


# ---- bad inputs: each raises an error that names the problem ----

def good_problem():
    return make_problem(dict(T=4, B=2, D=3, H=5, C=3), seed=0)


def test_wrong_input_size_names_expected_shape():
    params, xs, targets, h0 = good_problem()
    with pytest.raises(ValueError, match=r"xs has shape \(4, 2, 2\), expected \(any, any, 3\).*D = 3"):
        rnn.bptt(params, xs[:, :, :2], targets, h0)


def test_batch_major_input_is_rejected_with_a_hint():
    params, xs, targets, h0 = good_problem()
    with pytest.raises(ValueError, match=r"targets has shape \(2, 4\), expected \(4, 2\).*time-major"):
        rnn.bptt(params, xs, targets.T, h0)


def test_wrong_h0_shape():
    params, xs, targets, h0 = good_problem()
    with pytest.raises(ValueError, match=r"h0 has shape \(2, 4\), expected \(2, 5\)"):
        rnn.forward(params, xs, h0[:, :4])


def test_mismatched_parameter_shapes():
    params, xs, targets, h0 = good_problem()
    params["W_hh"] = params["W_hh"][:, :4]
    with pytest.raises(ValueError, match=r"W_hh has shape \(5, 4\), expected \(5, 5\)"):
        rnn.bptt(params, xs, targets, h0)
    params, *_ = good_problem()
    del params["b_y"]
    with pytest.raises(KeyError, match="missing.*b_y"):
        rnn.forward(params, xs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["xs", "h0", "W_hh"])
def test_nan_or_inf_is_rejected(bad, where):
    params, xs, targets, h0 = good_problem()
    arr = {"xs": xs, "h0": h0, "W_hh": params["W_hh"]}[where]
    arr[(0, 1) + (0,) * (arr.ndim - 2)] = bad
    with pytest.raises(ValueError, match=rf"{where} contains 1 NaN or inf"):
        rnn.bptt(params, xs, targets, h0)


def test_float_targets_for_cross_entropy_are_rejected():
    params, xs, targets, h0 = good_problem()
    with pytest.raises(TypeError, match="integer class indices.*float64.*loss='mse'"):
        rnn.bptt(params, xs, targets.astype(float), h0)


def test_int_targets_for_mse_are_rejected():
    params, xs, targets, h0 = good_problem()
    with pytest.raises(TypeError, match="float array.*MSE.*int64"):
        rnn.bptt(params, xs, np.zeros((4, 2, 3), dtype=np.int64), h0, loss="mse")


def test_class_out_of_range():
    params, xs, targets, h0 = good_problem()
    targets[0, 0] = 3
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\)"):
        rnn.bptt(params, xs, targets, h0)


def test_many_to_one_target_shape():
    params, xs, targets, h0 = good_problem()
    with pytest.raises(ValueError, match=r"targets has shape \(4, 2\), expected \(2,\)"):
        rnn.bptt(params, xs, targets, h0, mode="many_to_one")


@pytest.mark.parametrize("kwargs,match", [
    ({"activation": "softplus"}, "unknown activation 'softplus': choose one of 'relu', 'sigmoid', 'tanh'"),
    ({"loss": "hinge"}, "unknown loss 'hinge': choose one of 'cross_entropy', 'mse'"),
    ({"mode": "one_to_many"}, "unknown mode 'one_to_many': choose one of 'many_to_many', 'many_to_one'"),
])
def test_unknown_names(kwargs, match):
    params, xs, targets, h0 = good_problem()
    with pytest.raises(ValueError, match=match):
        rnn.bptt(params, xs, targets, h0, **kwargs)


def test_unknown_activation_in_forward():
    params, xs, _, _ = good_problem()
    with pytest.raises(ValueError, match="unknown activation 'Tanh'"):
        rnn.forward(params, xs, activation="Tanh")


def test_empty_sequence():
    params, xs, targets, h0 = good_problem()
    with pytest.raises(ValueError, match="at least one step"):
        rnn.forward(params, xs[:0])


def test_step_functions_check_shapes():
    params, xs, _, h0 = good_problem()
    with pytest.raises(ValueError, match=r"x_t has shape \(2, 4\), expected \(any, 3\)"):
        rnn.step_forward(np.zeros((2, 4)), h0, params)
    with pytest.raises(ValueError, match=r"h_prev has shape \(3, 5\), expected \(2, 5\)"):
        rnn.step_forward(xs[0], np.zeros((3, 5)), params)
    h_bad = h0.copy()
    h_bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="h_prev contains 1 NaN or inf"):
        rnn.step_forward(xs[0], h_bad, params)
    _, cache = rnn.step_forward(xs[0], h0, params)
    with pytest.raises(ValueError, match=r"dh_t has shape \(5, 2\), expected \(2, 5\)"):
        rnn.step_backward(np.zeros((5, 2)), cache)



def test_step_cache_fields_have_names():
    params, xs, _, h0 = good_problem()
    h_t, cache = rnn.step_forward(xs[0], h0, params)
    assert cache.h_t is h_t and cache[2] is cache.h_t and cache.h_prev is not None
    # step_backward still takes a plain tuple in the same order (the grader builds one).
    by_name, by_tuple = rnn.step_backward(h0, cache), rnn.step_backward(h0, tuple(cache))
    np.testing.assert_array_equal(by_name[1], by_tuple[1])


@pytest.mark.parametrize("which,match", [
    ("W_xh", r"W_xh has shape \(5,\), expected \(any, any\)"),
    ("W_hy", r"W_hy has shape \(\), expected \(any, 5\)"),
])
def test_weights_of_the_wrong_rank_are_named(which, match):
    # Before: H, D and C were read off W_xh and W_hy before their shapes were checked.
    params, xs, targets, h0 = good_problem()
    params[which] = np.zeros(5) if which == "W_xh" else np.zeros(())
    with pytest.raises(ValueError, match=match):
        rnn.bptt(params, xs, targets, h0)


def test_loss_and_grad_rejects_an_unknown_loss():
    vs, targets = np.zeros((2, 3, 4)), np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="unknown loss 'msee': choose one of 'cross_entropy', 'mse'"):
        rnn.loss_and_grad(vs, targets, "msee")


def test_backward_checks_the_shapes_of_hs_and_dh_out():
    params, xs, targets, h0 = good_problem()
    hs, vs = rnn.forward(params, xs, h0)
    dh_out = rnn.loss_and_grad(vs, targets, "cross_entropy")[1] @ params["W_hy"]
    # dh_out with a row for h_0 as well would be read one step off, silently.
    with pytest.raises(ValueError, match=r"dh_out has shape \(5, 2, 5\), expected \(4, 2, 5\)"):
        rnn.backward(params, xs, hs, np.concatenate([dh_out[:1], dh_out]))
    with pytest.raises(ValueError, match=r"hs has shape \(4, 2, 5\), expected \(5, 2, 5\).*hs\[0\] is h_0"):
        rnn.backward(params, xs, hs[1:], dh_out)

@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_backward_returns_dl_dh0(activation):
    params, xs, targets, h0 = make_problem(dict(T=5, B=2, D=3, H=4, C=3), seed=12)
    hs, vs = rnn.forward(params, xs, h0, activation)
    _, dvs = rnn.loss_and_grad(vs, targets, "cross_entropy")
    _, dh0 = rnn.backward(params, xs, hs, dvs @ params["W_hy"], activation)
    numeric = numerical_gradient(lambda h: rnn.bptt(params, xs, targets, h, activation)[0], h0)
    assert rel_error(dh0, numeric) < TOL


def test_sample_follows_a_learned_cycle():
    # Weights that make the model predict "the next symbol in a 0-1-2-3 cycle" with
    # near certainty: greedy sampling must walk the cycle.
    V = 4
    params = rnn.init_params(V, V, V, seed=0)
    params["W_xh"] = 10 * np.eye(V)
    params["W_hh"] = np.zeros((V, V))
    params["W_hy"] = 20 * np.roll(np.eye(V), 1, axis=0)
    ids = rnn.sample(params, first_id=2, n=6, temperature=0.5, seed=1)
    np.testing.assert_array_equal(ids, [3, 0, 1, 2, 3, 0])
    with pytest.raises(ValueError, match="D = 3 != C = 4"):
        rnn.sample(rnn.init_params(3, 5, 4), first_id=0, n=2)
    with pytest.raises(ValueError, match="temperature must be positive, got 0"):
        rnn.sample(params, first_id=0, n=2, temperature=0)
    with_h = rnn.sample(params, first_id=2, n=6, h=np.zeros(V), temperature=0.5, seed=1)
    np.testing.assert_array_equal(with_h, ids)


@pytest.mark.parametrize("kwargs,match", [
    (dict(first_id=4, n=2), r"first_id \(a symbol of the vocabulary\) must lie in \[0, 3\], got 4"),
    (dict(first_id=-1, n=2), r"first_id \(a symbol of the vocabulary\) must lie in \[0, 3\], got -1"),
    (dict(first_id=0, n=-1), r"n \(symbols to generate\) must lie in \[0, 10000000\], got -1"),
    (dict(first_id=0, n=2, h=np.zeros(7)), r"h has shape \(1, 7\), expected \(1, 5\)"),
])
def test_sample_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rnn.sample(rnn.init_params(4, 5, 4), **kwargs)
