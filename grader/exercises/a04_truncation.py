"""Assignment 04_truncation: the gradients of TBPTT(k1, k2) with hidden-state carry."""
from __future__ import annotations

import numpy as np

from course_lib import losses, optim, rnn, truncation

from . import ExerciseSpec, MistakeEdit, Read, prelude
from .a03_bptt import seq_dims

ASSIGNMENT = "04_truncation"
PRELUDE = prelude()

S_TBPTT = Read("04_truncation", "ch4-definition")
S_CARRY = Read("04_truncation", "ch4-carry")
S_TRAIN = Read("04_truncation", "ch4-definition")
S_DETACH = Read("04_truncation", "ch4-definition")
S_SINGLE_DETACH = Read("04_truncation", "ch4-detach")

SOLUTIONS = {
    "tbptt_gradients": '''def tbptt_gradients(params, xs, targets, k1, k2, h0):
    """The updates TBPTT(k1, k2) makes in one pass over a sequence (parameters fixed).

    Steps are processed in blocks of k1 (the last block may be shorter). After each
    block an update is made: its loss is the mean cross-entropy of the block's
    outputs (over its steps and the batch); it is backpropagated through at most the
    last k2 steps: every hidden state up to and including h_(t-k2), t the update
    point, is a constant, also where it feeds an output. So when k1 > k2 the block's
    outputs older than the window give gradients to W_hy and b_y only, nothing to
    W_xh, W_hh and b_h. The hidden state is carried from block to block.

    Inputs:
    - params: dict W_xh (H, D), W_hh (H, H), b_h (H,), W_hy (C, H), b_y (C,)
    - xs: inputs (T, B, D);  targets: int classes (T, B)
    - k1: steps between updates;  k2: steps of backpropagation (both in 1..T)
    - h0: hidden state before xs[0], (B, H)
    Returns a dict:
    - "t": steps processed at each update, shape (n_updates,), e.g. [k1, 2 k1, ...]
    - "loss": each update's loss, shape (n_updates,)
    - "grads": list of n_updates dicts keyed like params
    - "h_last": h_T, (B, H)
    """
    # Read: Chapter 4, "TBPTT(k1, k2)", "Where the gradient stops: detaching k2 steps back"
    # and "Carrying the hidden state across chunks".
    ### BEGIN SOLUTION
    W_xh, W_hh, b_h = params["W_xh"], params["W_hh"], params["b_h"]
    W_hy, b_y = params["W_hy"], params["b_y"]
    T, B, _ = xs.shape
    rows = np.arange(B)
    hs = [h0]
    ts, losses, all_grads = [], [], []
    start = 0
    while start < T:
        end = min(start + k1, T)
        h = hs[-1]
        for t in range(start, end):
            h = np.tanh(xs[t] @ W_xh.T + h @ W_hh.T + b_h)
            hs.append(h)
        n = (end - start) * B
        grads = {k: np.zeros_like(p) for k, p in params.items()}
        loss = 0.0
        dvs = {}
        for t in range(start, end):
            v = hs[t + 1] @ W_hy.T + b_y
            shifted = v - np.max(v, axis=1, keepdims=True)
            log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
            loss -= np.sum(log_probs[rows, targets[t]]) / n
            dv = np.exp(log_probs)
            dv[rows, targets[t]] -= 1.0
            dvs[t] = dv / n
            grads["W_hy"] += dvs[t].T @ hs[t + 1]
            grads["b_y"] += dvs[t].sum(axis=0)
        window_start = max(end - k2, 0)
        dh_next = np.zeros_like(h0)
        for t in range(end - 1, window_start - 1, -1):
            dh = dh_next + (dvs[t] @ W_hy if t in dvs else 0.0)
            da = dh * (1 - hs[t + 1] ** 2)
            grads["W_xh"] += da.T @ xs[t]
            grads["W_hh"] += da.T @ hs[t]
            grads["b_h"] += da.sum(axis=0)
            dh_next = da @ W_hh
        ts.append(end)
        losses.append(loss)
        all_grads.append(grads)
        start = end
    return {"t": np.array(ts), "loss": np.array(losses), "grads": all_grads, "h_last": hs[T]}
    ### END SOLUTION
''',
    "tbptt_train_sgd": '''def tbptt_train_sgd(params, xs, targets, k1, k2, lr, h0):
    """One pass of online training with TBPTT(k1, k2) and plain SGD.

    As in tbptt_gradients, but after every update the parameters change,
    W <- W - lr * dL/dW, and the following steps run with the new parameters. The
    hidden states already computed are kept (they are not recomputed), and the hidden
    state is carried across updates. The backward pass through a step of an earlier
    block may use either the current W_hh or the W_hh that step ran with (a buffer of
    step caches that keep their weights): both are accepted.

    Inputs:
    - params: dict W_xh (H, D), W_hh (H, H), b_h (H,), W_hy (C, H), b_y (C,);
      do not modify it: work on a copy
    - xs: inputs (T, B, D);  targets: int classes (T, B)
    - k1, k2: as in tbptt_gradients;  lr: learning rate (float)
    - h0: hidden state before xs[0], (B, H)
    Returns a dict:
    - "params": the parameters after the pass (dict keyed like params)
    - "loss": each update's loss, computed before its SGD step, shape (n_updates,)
    - "h_last": h_T, (B, H)
    """
    # Read: Chapter 4, "Training with TBPTT" and "Carrying the hidden state across chunks".
    ### BEGIN SOLUTION
    params = {k: p.copy() for k, p in params.items()}
    T, B, _ = xs.shape
    rows = np.arange(B)
    hs = [h0]
    losses = []
    start = 0
    while start < T:
        W_xh, W_hh, b_h = params["W_xh"], params["W_hh"], params["b_h"]
        W_hy, b_y = params["W_hy"], params["b_y"]
        end = min(start + k1, T)
        h = hs[-1]
        for t in range(start, end):
            h = np.tanh(xs[t] @ W_xh.T + h @ W_hh.T + b_h)
            hs.append(h)
        n = (end - start) * B
        grads = {k: np.zeros_like(p) for k, p in params.items()}
        loss = 0.0
        dvs = {}
        for t in range(start, end):
            v = hs[t + 1] @ W_hy.T + b_y
            shifted = v - np.max(v, axis=1, keepdims=True)
            log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
            loss -= np.sum(log_probs[rows, targets[t]]) / n
            dv = np.exp(log_probs)
            dv[rows, targets[t]] -= 1.0
            dvs[t] = dv / n
            grads["W_hy"] += dvs[t].T @ hs[t + 1]
            grads["b_y"] += dvs[t].sum(axis=0)
        window_start = max(end - k2, 0)
        dh_next = np.zeros_like(h0)
        for t in range(end - 1, window_start - 1, -1):
            dh = dh_next + (dvs[t] @ W_hy if t in dvs else 0.0)
            da = dh * (1 - hs[t + 1] ** 2)
            grads["W_xh"] += da.T @ xs[t]
            grads["W_hh"] += da.T @ hs[t]
            grads["b_h"] += da.sum(axis=0)
            dh_next = da @ W_hh
        for k in params:
            params[k] = params[k] - lr * grads[k]
        losses.append(loss)
        start = end
    return {"params": params, "loss": np.array(losses), "h_last": hs[T]}
    ### END SOLUTION
''',
}

MISTAKES = [
    MistakeEdit(
        "tbptt_gradients", "hidden state not carried between updates",
        "Only the gradient is truncated, not the forward pass: each block starts from the "
        "hidden state the previous block ended in (h0 for the first block), not from zeros.",
        S_CARRY,
        (("        h = hs[-1]\n", "        h = np.zeros_like(h0)\n        hs[-1] = h\n"),)),
    MistakeEdit(
        "tbptt_gradients", "hidden state reset to h0 at every update",
        "Only the gradient is truncated, not the forward pass: h0 is the state before the "
        "whole sequence; each later block starts from the state the previous block ended in.",
        S_CARRY,
        (("        h = hs[-1]\n", "        h = h0\n        hs[-1] = h\n"),)),
    MistakeEdit(
        "tbptt_gradients", "not detached: backpropagated through the whole history",
        "TBPTT(k1, k2) stops the backward pass k2 steps before the update point: the "
        "hidden state there is a constant (detached), so steps older than the window get "
        "no recurrent gradient.", S_DETACH,
        (("window_start = max(end - k2, 0)", "window_start = 0"),)),
    MistakeEdit(
        "tbptt_gradients", "only the state k2 steps back detached (k1 > k2)",
        "TBPTT(k1, k2) treats every state up to the one k2 steps before the update point "
        "as a constant, also where it feeds an output: when k1 > k2 the block's outputs "
        "older than the window send nothing into W_xh, W_hh and b_h. Detaching only that "
        "one state lets them backpropagate through their own past: a different algorithm.",
        S_SINGLE_DETACH,
        (("        for t in range(end - 1, window_start - 1, -1):\n",
          "        for t in range(end - 1, min(window_start, start) - 1, -1):\n"
          "            if t == window_start - 1:\n"
          "                dh_next = np.zeros_like(h0)\n"),)),
    MistakeEdit(
        "tbptt_gradients", "backpropagated k1 steps instead of k2",
        "k1 says how often to update, k2 how far back to backpropagate: the window of "
        "each update is the last k2 steps, whatever k1 is.", S_TBPTT,
        (("window_start = max(end - k2, 0)", "window_start = max(end - k1, 0)"),)),
    MistakeEdit(
        "tbptt_gradients", "block loss summed over its steps instead of averaged",
        "Each update's loss is the MEAN over the k1 outputs of its block and the batch: "
        "divide by k1*B (the last block's own length), not by B.", S_TBPTT,
        (("n = (end - start) * B", "n = B"),)),
    MistakeEdit(
        "tbptt_gradients", "short last block averaged over k1 steps",
        "When k1 does not divide T the last block is shorter: its loss is the mean over "
        "ITS steps, so divide by (its length) * B, not by k1 * B.", S_TBPTT,
        (("n = (end - start) * B", "n = k1 * B"),)),
    MistakeEdit(
        "tbptt_train_sgd", "gradient added instead of subtracted",
        "Gradient DEscent: W <- W - lr * dL/dW.", S_TRAIN,
        (("params[k] = params[k] - lr * grads[k]", "params[k] = params[k] + lr * grads[k]"),)),
    MistakeEdit(
        "tbptt_train_sgd", "one update at the end instead of one per block",
        "TBPTT updates the parameters after every k1 steps, and the next block runs with "
        "the new values; accumulating all blocks' gradients into one final step is a "
        "different algorithm.", S_TRAIN,
        (("        for k in params:\n            params[k] = params[k] - lr * grads[k]\n",
          "        total = grads if start == 0 else {k: total[k] + grads[k] for k in grads}\n"),
         ("    return {\"params\": params,",
          "    params = {k: params[k] - lr * total[k] for k in params}\n"
          "    return {\"params\": params,"))),
    MistakeEdit(
        "tbptt_train_sgd", "backpropagated k1 steps instead of k2",
        "k1 says how often to update, k2 how far back to backpropagate: the window of "
        "each update is the last k2 steps, whatever k1 is.", S_TBPTT,
        (("window_start = max(end - k2, 0)", "window_start = max(end - k1, 0)"),)),
    MistakeEdit(
        "tbptt_train_sgd", "hidden state reset to zeros at every update",
        "Only the gradient is truncated, not the forward pass: each block starts from the "
        "hidden state the previous block ended in (h0 for the first block).", S_CARRY,
        (("        h = hs[-1]\n", "        h = np.zeros_like(h0)\n        hs[-1] = h\n"),)),
]


# ---------------------------------------------------------------- references
def tbptt_gradients(params, xs, targets, k1, k2, h0):
    updates = truncation.tbptt_updates(params, xs, targets, k1, k2, h0=h0)
    ts, losses, grads = [], [], []
    while True:
        try:
            t, loss, g = next(updates)
        except StopIteration as done:
            h_last = done.value
            break
        ts.append(t)
        losses.append(loss)
        grads.append(g)
    return {"t": np.array(ts), "loss": np.array(losses), "grads": grads, "h_last": h_last}


# ---------------------------------------------------------------- cases
def _case(rng, T, B, D, H, C, k1, k2, scale=0.9):
    params = rnn.init_params(D, H, C, seed=int(rng.integers(2**31)), scale=scale)
    params["b_h"] = 0.1 * rng.standard_normal(H)
    params["b_y"] = 0.1 * rng.standard_normal(C)
    return {"params": params, "xs": rng.standard_normal((T, B, D)),
            "targets": rng.integers(0, C, (T, B)), "k1": k1, "k2": k2,
            "h0": 0.5 * np.tanh(rng.standard_normal((B, H)))}


def visible():
    """A fixed RNN (D = 2, H = 3, C = 2, B = 2) on T = 6 steps: TBPTT(2, 3), TBPTT(3, 2),
    TBPTT(1, 3) (k2 - k1 = 2), TBPTT(4, 3) (a shorter last block of 2 steps) and
    TBPTT(6, 6), which is full BPTT."""
    rng = np.random.default_rng(4)
    base = _case(rng, 6, 2, 2, 3, 2, 2, 3)
    return [dict(base, k1=k1, k2=k2) for k1, k2 in ((2, 3), (3, 2), (1, 3), (4, 3), (6, 6))]


def hidden(rng):
    shapes = ((7, 3, 2, 4, 3, 2, 4), (8, 2, 3, 5, 2, 4, 2), (1, 1, 2, 3, 2, 1, 1),
              (9, 1, 1, 2, 3, 3, 3), (10, 2, 2, 3, 2, 1, 3), (5, 2, 3, 3, 4, 5, 5))
    return [_case(rng, *s) for s in shapes]


def tbptt_train_sgd(params, xs, targets, k1, k2, lr, h0):
    params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    history = truncation.train_tbptt(params, xs, targets, k1, k2, optim.SGD(lr), h0=h0)
    return {"params": params, "loss": np.array(history["loss"]), "h_last": history["h_last"]}


def tbptt_train_sgd_stored_weights(params, xs, targets, k1, k2, lr, h0):
    """The other design the contract allows: each step's cache keeps the W_hh that step
    ran with, and the backward pass through an older step uses that W_hh."""
    params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    T, B, _ = xs.shape
    hs, W_hh_then, block_losses = [np.asarray(h0, dtype=np.float64)], [], []
    for start in range(0, T, k1):
        end = min(start + k1, T)
        p = params
        for t in range(start, end):
            hs.append(np.tanh(xs[t] @ p["W_xh"].T + hs[-1] @ p["W_hh"].T + p["b_h"]))
            W_hh_then.append(p["W_hh"])
        grads = {k: np.zeros_like(v) for k, v in p.items()}
        loss, dh_out = 0.0, {}
        for t in range(start, end):
            value, dv = losses_ce(hs[t + 1] @ p["W_hy"].T + p["b_y"], targets[t])
            loss += value * B / ((end - start) * B)
            dv = dv * B / ((end - start) * B)
            grads["W_hy"] += dv.T @ hs[t + 1]
            grads["b_y"] += dv.sum(axis=0)
            dh_out[t] = dv @ p["W_hy"]
        dh = np.zeros_like(hs[0])
        for t in range(end - 1, max(end - k2, 0) - 1, -1):
            da = (dh + dh_out.get(t, 0.0)) * (1 - hs[t + 1] ** 2)
            grads["W_xh"] += da.T @ xs[t]
            grads["W_hh"] += da.T @ hs[t]
            grads["b_h"] += da.sum(axis=0)
            dh = da @ W_hh_then[t]
        params = {k: p[k] - lr * grads[k] for k in p}
        block_losses.append(loss)
    return {"params": params, "loss": np.array(block_losses), "h_last": hs[T]}


def losses_ce(v, targets):
    """Mean cross-entropy over the batch and its gradient (course_lib.losses)."""
    return losses.cross_entropy(v, targets)


def train_visible():
    """The same RNN and sequence as tbptt_gradients: TBPTT(2, 3), (3, 2), (1, 3) and
    (4, 3), lr 0.5."""
    return [dict(c, lr=0.5) for c in visible()[:4]]


def train_hidden(rng):
    return [dict(c, lr=float(rng.uniform(0.1, 1.0))) for c in hidden(rng)]


EXERCISES_SPEC = [
    ExerciseSpec("tbptt_gradients", 5, tbptt_gradients, visible, hidden, S_TBPTT,
                 "every update's t, loss and gradients, and h_T, for TBPTT(2, 3), (3, 2), (1, 3), (4, 3), (6, 6)",
                 dims=seq_dims),
    ExerciseSpec("tbptt_train_sgd", 3, tbptt_train_sgd, train_visible, train_hidden, S_TRAIN,
                 "the updates, losses and h_T of one pass of TBPTT(2, 3), (3, 2), (1, 3), (4, 3) with SGD",
                 dims=seq_dims, updates_of=(("params", "params"),),
                 accepted=(tbptt_train_sgd_stored_weights,)),
]
