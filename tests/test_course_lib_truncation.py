"""course_lib.truncation: TBPTT(n, n) is full BPTT; TBPTT(k1, k2) is autograd with every
state up to k2 steps back detached (the same as one detach only for k1 <= k2); randomized
truncation is unbiased; the training loop; and bad k1/k2/keep_prob."""

import numpy as np
import pytest
import torch

from course_lib import optim, rnn
from course_lib.gradcheck import rel_error
from course_lib.truncation import tbptt_updates, train_tbptt
from strategies import make_problem

import torch_rnn

def torch_tbptt(params, xs, targets, k1, k2, h0, activation, loss):
    """Reference: for each update point `end`, run the sequence from the start with
    every hidden state up to h_{end-k2} detached, and differentiate the mean loss of
    the outputs since the previous update."""
    results = []
    for start in range(0, len(xs), k1):
        end = min(start + k1, len(xs))
        P = torch_rnn.leaves(params)
        # h_t at or before h_{end-k2} is a constant
        hs = torch_rnn.unroll(P, xs[:end], torch.tensor(h0), activation,
                              detach=lambda t: t <= end - k2)
        # an output older than the window reaches W_hy and b_y only
        v = torch.stack([torch_rnn.output(P, h.detach() if t + 1 <= end - k2 else h)
                         for t, h in enumerate(hs) if t >= start])
        L = torch_rnn.loss(v, targets[start:end], loss)
        L.backward()
        results.append((end, L.item(), torch_rnn.grads(P)))
    return results


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("T", [1, 9])
def test_tbptt_n_n_is_full_bptt_exactly(activation, loss, T):
    params, xs, targets, h0 = make_problem(dict(T=T, B=3, D=2, H=4, C=3), seed=T, loss=loss)
    value, grads, h_last = rnn.bptt(params, xs, targets, h0, activation, loss)
    updates = tbptt_updates(params, xs, targets, T, T, h0, activation, loss)
    (t, t_value, t_grads), = list(updates)
    assert t == T and t_value == value
    for k in grads:
        np.testing.assert_array_equal(t_grads[k], grads[k])


@pytest.mark.parametrize("k1,k2", [
    (1, 10),   # TBPTT(1, n): Williams & Peng's classic, an update after every step
    (2, 5),    # k1 < k2
    (3, 3),    # k1 = k2, the chunked setting
    (4, 4),    # k1 = k2 not dividing T: a shorter last block
    (5, 2),    # k1 > k2: older outputs reach W_hy, b_y only
    (10, 1),
    (1, 1),
    (7, 10),
])
@pytest.mark.parametrize("activation,loss", [("tanh", "cross_entropy"), ("relu", "mse")])
def test_tbptt_matches_torch_with_h_detached_k2_steps_back(k1, k2, activation, loss):
    params, xs, targets, h0 = make_problem(dict(T=10, B=2, D=3, H=4, C=3), seed=k1 * 10 + k2,
                                           loss=loss)
    ours = list(tbptt_updates(params, xs, targets, k1, k2, h0, activation, loss))
    reference = torch_tbptt(params, xs, targets, k1, k2, h0, activation, loss)
    assert [t for t, _, _ in ours] == [t for t, _, _ in reference]
    for (t, value, grads), (_, ref_value, ref_grads) in zip(ours, reference):
        assert value == pytest.approx(ref_value, rel=1e-12)
        for k in grads:
            assert rel_error(grads[k], ref_grads[k]) < 1e-10, (t, k)


def test_truncation_changes_the_recurrent_gradient():
    # A test that TBPTT(k1, k2 < n) really truncates: its gradient differs from BPTT's.
    params, xs, targets, h0 = make_problem(dict(T=8, B=2, D=2, H=3, C=2), seed=4)
    _, full, _ = rnn.bptt(params, xs, targets, h0)
    (_, _, truncated), = list(tbptt_updates(params, xs, targets, 8, 3, h0))
    np.testing.assert_array_equal(truncated["W_hy"], full["W_hy"])
    assert rel_error(truncated["W_hh"], full["W_hh"]) > 1e-3


def test_generator_returns_h_last_and_state_carries_across_calls():
    params, xs, targets, h0 = make_problem(dict(T=9, B=2, D=3, H=4, C=3), seed=6)
    hs, _ = rnn.forward(params, xs, h0)
    first = tbptt_updates(params, xs[:4], targets[:4], 2, 3, h0)
    with pytest.raises(StopIteration) as done:
        while True:
            next(first)
    np.testing.assert_allclose(done.value.value, hs[4], rtol=1e-14)
    second = list(tbptt_updates(params, xs[4:], targets[4:], 5, 5, done.value.value))
    assert [t for t, _, _ in second] == [5]


def torch_chunked_sgd(params, xs, targets, k, lr, h0, epochs):
    """Chunked TBPTT(k, k) with SGD, the way PyTorch code usually writes it."""
    P = torch_rnn.leaves(params)
    losses = []
    for _ in range(epochs):
        h = torch.tensor(h0)
        for start in range(0, len(xs), k):
            hs = torch_rnn.unroll(P, xs[start:start + k], h.detach())
            h = hs[-1]
            L = torch_rnn.loss(torch.stack([torch_rnn.output(P, h) for h in hs]),
                               targets[start:start + k])
            L.backward()
            with torch.no_grad():
                for p in P.values():
                    p -= lr * p.grad
                    p.grad = None
            losses.append(L.item())
    return {n: p.detach().numpy() for n, p in P.items()}, losses, h.detach().numpy()


def test_train_tbptt_matches_torch_chunked_training():
    params, xs, targets, h0 = make_problem(dict(T=12, B=3, D=3, H=5, C=4), seed=8)
    ref_params, ref_losses, ref_h = torch_chunked_sgd(params, xs, targets, 4, 0.5, h0, epochs=3)
    history = train_tbptt(params, xs, targets, 4, 4, optim.SGD(0.5), h0, epochs=3)
    assert history["t"] == [4, 8, 12] * 3 and history["epoch"] == [0] * 3 + [1] * 3 + [2] * 3
    np.testing.assert_allclose(history["loss"], ref_losses, rtol=1e-12)
    for k in params:
        np.testing.assert_allclose(params[k], ref_params[k], rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(history["h_last"], ref_h, rtol=1e-11)


def test_train_tbptt_learns_delayed_copy_and_clips():
    from course_lib.data import delayed_copy

    xs, targets = delayed_copy(T=60, delay=2, batch=16, vocab_size=4, seed=0)
    params = rnn.init_params(4, 16, 4, seed=0)
    history = train_tbptt(params, xs, targets, 10, 10, optim.Momentum(0.3, 0.9),
                          epochs=30, max_norm=1.0)
    first, last = np.mean(history["loss"][:6]), np.mean(history["loss"][-6:])
    assert last < 0.5 * first
    assert len(history["grad_norm"]) == 6 * 30 and all(n > 0 for n in history["grad_norm"])


@pytest.mark.parametrize("k1,k2,match", [
    (0, 3, r"k1 \(steps between updates\) must lie in \[1, 10\], got 0"),
    (11, 3, r"k1 \(steps between updates\) must lie in \[1, 10\], got 11"),
    (3, 0, r"k2 \(steps of backpropagation\) must lie in \[1, 10\], got 0"),
    (3, 12, r"k2 \(steps of backpropagation\) must lie in \[1, 10\], got 12"),
])
def test_k1_k2_out_of_range(k1, k2, match):
    params, xs, targets, h0 = make_problem(dict(T=10, B=2, D=3, H=4, C=3), seed=0)
    with pytest.raises(ValueError, match=match):
        tbptt_updates(params, xs, targets, k1, k2, h0)
    with pytest.raises(ValueError, match=match):
        train_tbptt(params, xs, targets, k1, k2, optim.SGD(0.1), h0)


def test_k1_must_be_an_int():
    params, xs, targets, h0 = make_problem(dict(T=10, B=2, D=3, H=4, C=3), seed=0)
    with pytest.raises(TypeError, match=r"k1 \(steps between updates\) must be an int, got 2.5"):
        tbptt_updates(params, xs, targets, 2.5, 3, h0)


def test_bad_targets_in_tbptt():
    params, xs, targets, h0 = make_problem(dict(T=10, B=2, D=3, H=4, C=3), seed=0)
    with pytest.raises(TypeError, match="integer class indices"):
        tbptt_updates(params, xs, targets.astype(float), 2, 2, h0)


def test_progress_bar_counts_updates(capsys):
    params, xs, targets, h0 = make_problem(dict(T=10, B=2, D=3, H=4, C=3), seed=0)
    history = train_tbptt(params, xs, targets, 4, 4, optim.SGD(0.1), h0, epochs=2,
                          progress=True)
    assert history["t"] == [4, 8, 10, 4, 8, 10]
    assert "TBPTT(4, 4)" in capsys.readouterr().err


def torch_single_detach(params, xs, targets, k1, k2, h0):
    """What autograd code computes when it detaches only h_{end-k2} (and the state at
    the previous update point): outputs older than the window keep their own past,
    back to the previous update point."""
    results = []
    for start in range(0, len(xs), k1):
        end = min(start + k1, len(xs))
        P = torch_rnn.leaves(params)
        hs = torch_rnn.unroll(P, xs[:end], torch.tensor(h0),
                              detach=lambda t: t <= min(start, end - k2) or t == end - k2)
        v = torch.stack([torch_rnn.output(P, h) for h in hs[start:]])
        torch_rnn.loss(v, targets[start:end]).backward()
        results.append(torch_rnn.grads(P))
    return results


@pytest.mark.parametrize("k1,k2,same", [(3, 3, True), (2, 5, True), (6, 3, False),
                                        (12, 5, False)])
def test_detaching_one_state_k2_back_is_tbptt_only_for_k1_le_k2(k1, k2, same):
    params, xs, targets, h0 = make_problem(dict(T=12, B=2, D=3, H=5, C=3), seed=k1 + k2)
    ours = [g for _, _, g in tbptt_updates(params, xs, targets, k1, k2, h0)]
    single = torch_single_detach(params, xs, targets, k1, k2, h0)
    errors = [rel_error(g["W_hh"], s["W_hh"]) for g, s in zip(ours, single)]
    if same:
        assert max(errors) < 1e-10
    else:
        # The older outputs' own past is missing from TBPTT(k1, k2): a large difference.
        assert max(errors) > 0.1, errors


class FixedDraws:
    """Stands in for a numpy Generator: geometric() returns `steps + 1`, so every
    update of randomized truncation goes `steps` steps past its window."""

    def __init__(self, steps):
        self.steps = steps

    def geometric(self, p):
        return self.steps + 1


@pytest.mark.parametrize("k1,k2,keep_prob", [(2, 2, 0.6), (1, 3, 0.3), (3, 4, 0.8)])
def test_randomized_truncation_is_unbiased_exactly(k1, k2, keep_prob):
    # The expectation over the number of extra steps j, P(j) = keep_prob**j (1 - keep_prob)
    # and the tail P(j >= all history) = keep_prob**history, must be the gradient of the
    # block loss through the whole history: TBPTT(k1, T) with the same parameters.
    T = 9
    params, xs, targets, h0 = make_problem(dict(T=T, B=2, D=3, H=4, C=3), seed=k1 * k2)
    exact = [g for _, _, g in tbptt_updates(params, xs, targets, k1, T, h0)]
    by_steps = [[g for _, _, g in tbptt_updates(params, xs, targets, k1, k2, h0,
                                                keep_prob=keep_prob, rng=FixedDraws(j))]
                for j in range(T)]
    for u, (end, full) in enumerate(zip(range(k1, T + k1, k1), exact)):
        history = max(min(end, T) - k2, 0)  # steps before the window
        weights = [keep_prob**j * (1 - keep_prob) for j in range(history)] + [keep_prob**history]
        for k in full:
            expected = sum(w * by_steps[j][u][k] for j, w in enumerate(weights))
            np.testing.assert_allclose(expected, full[k], rtol=1e-10, atol=1e-13)


def test_randomized_truncation_with_no_extra_step_is_fixed_truncation():
    params, xs, targets, h0 = make_problem(dict(T=10, B=2, D=3, H=4, C=3), seed=3)
    fixed = list(tbptt_updates(params, xs, targets, 2, 3, h0))
    randomized = list(tbptt_updates(params, xs, targets, 2, 3, h0, keep_prob=0.5,
                                    rng=FixedDraws(0)))
    for (_, _, g), (_, _, r) in zip(fixed, randomized):
        for k in g:
            np.testing.assert_array_equal(g[k], r[k])


def test_randomized_truncation_draws_differ_and_repeat_with_the_seed():
    params, xs, targets, h0 = make_problem(dict(T=12, B=2, D=3, H=4, C=3), seed=5)
    runs = [[g["W_hh"] for _, _, g in tbptt_updates(params, xs, targets, 3, 3, h0,
                                                     keep_prob=0.7, rng=seed)]
            for seed in (0, 0, 1)]
    np.testing.assert_array_equal(np.stack(runs[0]), np.stack(runs[1]))
    assert not np.array_equal(np.stack(runs[0]), np.stack(runs[2]))


@pytest.mark.parametrize("k1,k2,keep_prob,match", [
    (3, 3, 1.0, r"keep_prob must lie in \(0, 1\), got 1.0"),
    (3, 3, 0.0, r"keep_prob must lie in \(0, 1\), got 0.0"),
    (4, 2, 0.5, r"randomized truncation needs k1 <= k2, got k1 = 4, k2 = 2"),
])
def test_randomized_truncation_bad_arguments(k1, k2, keep_prob, match):
    params, xs, targets, h0 = make_problem(dict(T=10, B=2, D=3, H=4, C=3), seed=0)
    with pytest.raises(ValueError, match=match):
        tbptt_updates(params, xs, targets, k1, k2, h0, keep_prob=keep_prob)


def test_train_tbptt_with_randomized_truncation():
    params, xs, targets, h0 = make_problem(dict(T=12, B=2, D=3, H=4, C=3), seed=2)
    runs = []
    for _ in range(2):
        trained = {k: v.copy() for k, v in params.items()}
        train_tbptt(trained, xs, targets, 3, 3, optim.SGD(0.1), h0, epochs=3, keep_prob=0.6,
                    rng=np.random.default_rng(4))
        runs.append(trained)
    fixed = {k: v.copy() for k, v in params.items()}
    train_tbptt(fixed, xs, targets, 3, 3, optim.SGD(0.1), h0, epochs=3)
    for k in params:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])  # the same draws again
    assert not np.allclose(runs[0]["W_hh"], fixed["W_hh"])       # some update went further back
    with pytest.raises(ValueError, match="randomized truncation needs k1 <= k2"):
        train_tbptt(params, xs, targets, 4, 2, optim.SGD(0.1), h0, keep_prob=0.5)
