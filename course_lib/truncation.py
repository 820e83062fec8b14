"""Truncated BPTT: TBPTT(k1, k2) in the sense of Williams & Peng (1990) and Sutskever (2013).

The sequence is processed one step at a time. Every k1 steps (and at the end of
the sequence, for a last shorter block) an update is made:
- its loss is the mean loss of the outputs since the previous update (k1 steps);
- it is backpropagated through at most the last k2 steps: the hidden state k2
  steps before the update point is treated as a constant;
- outputs older than that window (possible when k1 > k2) still give gradients
  to W_hy and b_y, but nothing flows from them into the recurrence.
In autograd terms: every hidden state up to and including h_{t-k2} (t the update
point) is detached, also where it feeds an output. For k1 <= k2 that is the same as
detaching the one state h_{t-k2}, since every output of the block lies in the
window. For k1 > k2 it is not: detaching only h_{t-k2} lets the outputs older than
the window backpropagate through their own past, back to the previous update point,
and gives a different gradient (the tests measure the difference).
TBPTT(n, n) on a length-n sequence is full BPTT; TBPTT(1, n) updates after every
step through everything seen so far; k1 = k2 is the common "chunked" setting.

Randomized truncation (keep_prob, in the manner of Tallec & Ollivier 2017): with
k1 <= k2, the backward pass of an update goes through the k2-step window and then
goes on, one step further back at a time, each with probability keep_prob; every
step it goes on divides the gradient it carries by keep_prob. A path of the
computation graph that reaches j steps before the window is then kept with
probability keep_prob**j and weighted by keep_prob**-j, so the update's gradient is
unbiased: its expectation is the gradient of the block's loss through the whole
history back to h0 (what TBPTT(k1, T) computes for the same parameters).

The hidden state is carried across updates, and across calls through h0 / h_last.
Within one call, the hidden states already computed are kept: parameters changed
between updates are used for the steps that follow, as in online TBPTT. The
window never reaches back before the start of the call (h0 is a constant).
"""

import numpy as np

from . import activations
from .optim import clip_grad_norm, grad_norm
from .rnn import (PARAM_NAMES, backward, check_inputs, check_targets, hidden_states,
                  loss_and_grad, outputs, outputs_backward)
from .validation import int_in_range, known_name


def tbptt_updates(params, xs, targets, k1, k2, h0=None, activation="tanh",
                  loss="cross_entropy", keep_prob=None, rng=None):
    """A generator of the TBPTT(k1, k2) updates of one pass over a sequence.

    Inputs:
    - params: dict from rnn.init_params; the caller may update it in place between
      updates (the next steps then run with the new values)
    - xs: inputs (T, B, D)
    - targets: int (T, B) for cross_entropy, float (T, B, C) for mse
    - k1: steps between updates, 1 <= k1 <= T
    - k2: steps backpropagated through per update, 1 <= k2 <= T
    - h0: hidden state before xs[0], shape (B, H); zeros if None
    - activation, loss: as rnn.bptt
    - keep_prob: None for fixed truncation; a float in (0, 1) for randomized
      truncation beyond the k2-step window (needs k1 <= k2; see the module docstring)
    - rng: numpy Generator or int seed for the randomized truncation points
    Yields, per update:
    - t: number of steps processed so far (the update is made after step t)
    - loss: mean loss of the outputs since the previous update (float)
    - grads: dict keyed like params
    Returns (as the generator's return value, StopIteration.value):
    - h_last: h_T, shape (B, H)
    Bad arguments raise at the call, before the first update.
    """
    known_name("activation", activation, activations.ACTIVATIONS)
    xs, h0 = check_inputs(params, xs, h0)
    T, B, _ = xs.shape
    k1 = int_in_range("k1 (steps between updates)", k1, 1, T)
    k2 = int_in_range("k2 (steps of backpropagation)", k2, 1, T)
    C = params["W_hy"].shape[0]
    targets = check_targets(targets, loss, "many_to_many", T, B, C)
    if keep_prob is not None:
        if not 0 < keep_prob < 1:
            raise ValueError(f"keep_prob must lie in (0, 1), got {keep_prob}; "
                             "use keep_prob=None for fixed truncation")
        if k1 > k2:
            raise ValueError(f"randomized truncation needs k1 <= k2, got k1 = {k1}, k2 = {k2}: "
                             "every output of a block must lie inside the fixed window")
        rng = _generator(rng)
    return _updates(params, xs, targets, k1, k2, h0, activation, loss, keep_prob, rng)


def _generator(rng):
    """rng itself if it draws geometric numbers (a numpy Generator), else default_rng(rng)."""
    return rng if hasattr(rng, "geometric") else np.random.default_rng(rng)


def _updates(params, xs, targets, k1, k2, h0, activation, loss, keep_prob, rng):
    """The generator behind tbptt_updates (arguments already checked)."""
    T, B, _ = xs.shape
    hs = np.empty((T + 1, B, h0.shape[1]))
    hs[0] = h0
    start = 0
    while start < T:
        end = min(start + k1, T)
        hs[start:end + 1] = hidden_states(params, xs[start:end], hs[start], activation)
        h_block = hs[start + 1:end + 1]
        value, dvs = loss_and_grad(outputs(params, h_block), targets[start:end], loss)

        # The window covers steps window_start+1 .. end; h_{window_start} is a constant.
        # Outputs older than the window (k1 > k2) give gradients to W_hy and b_y only.
        window_start = max(end - k2, 0)
        dh_out, output_grads = outputs_backward(params, h_block, dvs, end - window_start)
        grads, dh_window_start = backward(params, xs[window_start:end],
                                          hs[window_start:end + 1], dh_out, activation)
        if keep_prob is not None and window_start > 0:
            extra_steps = min(int(rng.geometric(1.0 - keep_prob)) - 1, window_start)
            if extra_steps:
                _add_random_extension(grads, params, xs, hs, window_start, extra_steps,
                                      dh_window_start, keep_prob, activation)
        grads.update(output_grads)
        yield end, value, {k: grads[k] for k in PARAM_NAMES}
        start = end
    return hs[T].copy()


def _add_random_extension(grads, params, xs, hs, window_start, extra_steps, dh_window_start,
                          keep_prob, activation):
    """Add to grads the backward pass through the extra_steps steps before the window.

    Each of these steps is reached with probability keep_prob**j (j = 1, 2, ...), so the
    gradient carried into it is divided by keep_prob once per step: into the first one
    by dividing dL/dh_{window_start}, within them by backpropagating through W_hh / keep_prob.
    """
    first = window_start - extra_steps
    dh_out = np.zeros((extra_steps,) + dh_window_start.shape)
    dh_out[-1] = dh_window_start / keep_prob
    compensated = {**params, "W_hh": params["W_hh"] / keep_prob}
    extension, _ = backward(compensated, xs[first:window_start], hs[first:window_start + 1],
                            dh_out, activation)
    for k, g in extension.items():
        grads[k] += g


def train_tbptt(params, xs, targets, k1, k2, optimizer, h0=None, activation="tanh",
                loss="cross_entropy", epochs=1, max_norm=None, progress=False,
                keep_prob=None, rng=None):
    """Train with TBPTT(k1, k2): every update's gradients go to the optimiser.

    Each epoch is one pass over the sequence starting from h0; within a pass the
    hidden state is carried from update to update.

    Inputs:
    - params: dict from rnn.init_params, updated in place
    - xs, targets, k1, k2, h0, activation, loss, keep_prob: as tbptt_updates
    - rng: as tbptt_updates; pass one numpy Generator to successive calls so that
      their random truncation points differ
    - optimizer: an object with .step(params, grads), e.g. optim.SGD(0.1)
    - epochs: number of passes over the sequence
    - max_norm: clip the gradient norm of each update to this (None: no clipping)
    - progress: show a tqdm progress bar over the updates (it writes to stderr,
      which nbgrader counts as a failure in a graded cell: keep it off there)
    Returns a history dict:
    - "epoch", "t", "loss", "grad_norm": lists, one entry per update
      (grad_norm is the norm before clipping)
    - "h_last": the hidden state after the last step of the last epoch, (B, H)
    """
    history = {"epoch": [], "t": [], "loss": [], "grad_norm": [], "h_last": None}
    if keep_prob is not None:
        rng = _generator(rng)  # one stream for all epochs
    bar = None
    for epoch in range(epochs):
        updates = tbptt_updates(params, xs, targets, k1, k2, h0, activation, loss,
                                keep_prob, rng)
        if progress and bar is None:  # after tbptt_updates has checked k1
            from tqdm.auto import tqdm

            bar = tqdm(total=epochs * -(-len(xs) // k1), desc=f"TBPTT({k1}, {k2})")
        while True:
            try:
                t, value, grads = next(updates)
            except StopIteration as done:
                history["h_last"] = done.value
                break
            if max_norm is None:
                norm = grad_norm(grads)
            else:
                grads, norm = clip_grad_norm(grads, max_norm)
            optimizer.step(params, grads)
            for key, item in zip(("epoch", "t", "loss", "grad_norm"), (epoch, t, value, norm)):
                history[key].append(item)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}")
    if bar is not None:
        bar.close()
    return history
