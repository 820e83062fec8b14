"""An Elman RNN and backpropagation through time (BPTT).

Math (column vectors), one step:
    a_t = W_xh x_t + W_hh h_{t-1} + b_h,   h_t = phi(a_t),   v_t = W_hy h_t + b_y
Code (time-major, batches of ROW vectors, the same parameter shapes):
    a_t = x_t @ W_xh.T + h_prev @ W_hh.T + b_h        (B, H)
    v_t = h_t @ W_hy.T + b_y                           (B, C)
Shapes: xs (T, B, D); W_xh (H, D); W_hh (H, H); b_h (H,); W_hy (C, H); b_y (C,).

Backward names: dh = dL/dh_t, da = dL/da_t, dh_next = the part of dL/dh_t that
arrives from step t+1, dv = dL/dv_t. Gradients are "delta times input transposed",
summed over time and batch: dW_hh = sum_t da_t.T @ h_{t-1}, and so on.

Losses: "cross_entropy" (softmax of v_t against integer classes, mean over the T*B
predictions) or "mse" (v_t itself is the prediction; mean over all T*B*C elements).
Mode "many_to_many" puts a loss on every step, "many_to_one" on the last step only.
"""

from typing import NamedTuple

import numpy as np

from . import activations
from .losses import check_loss_name, cross_entropy, mse, softmax
from .validation import (as_float_array, check_shape, class_targets, int_in_range, known_name,
                         value_targets)

PARAM_NAMES = ("W_xh", "W_hh", "b_h", "W_hy", "b_y")
MODES = ("many_to_many", "many_to_one")


def init_params(input_size, hidden_size, output_size, seed=0, scale=None):
    """Random parameters for an RNN with D inputs, H hidden units and C outputs.

    Weights are drawn from a normal distribution with standard deviation `scale`,
    or 1/sqrt(fan_in) of each matrix when scale is None; biases start at zero.

    Inputs:
    - input_size D, hidden_size H, output_size C: ints >= 1
    - seed: seed of numpy's default_rng
    - scale: float or None
    Returns:
    - dict of float64 arrays: W_xh (H, D), W_hh (H, H), b_h (H,), W_hy (C, H), b_y (C,)
    """
    rng = np.random.default_rng(seed)
    D, H, C = input_size, hidden_size, output_size

    def weight(rows, cols):
        std = 1.0 / np.sqrt(cols) if scale is None else scale
        return std * rng.standard_normal((rows, cols))

    return {
        "W_xh": weight(H, D),
        "W_hh": weight(H, H),
        "b_h": np.zeros(H),
        "W_hy": weight(C, H),
        "b_y": np.zeros(C),
    }


def check_params(params):
    """Check the parameter dict (keys, shapes, finiteness); return (D, H, C)."""
    missing = [k for k in PARAM_NAMES if k not in params]
    if missing:
        raise KeyError(f"params is missing {missing}; init_params gives all of {list(PARAM_NAMES)}")
    for k in PARAM_NAMES:
        as_float_array(k, params[k])
    check_shape("W_xh", params["W_xh"], (None, None), "(H, D)")
    H, D = np.shape(params["W_xh"])
    check_shape("W_hh", params["W_hh"], (H, H), f"(H, H) with H = {H} from W_xh (H, D)")
    check_shape("b_h", params["b_h"], (H,), f"(H,) with H = {H}")
    check_shape("W_hy", params["W_hy"], (None, H), f"(C, H) with H = {H}")
    C = np.shape(params["W_hy"])[0]
    check_shape("b_y", params["b_y"], (C,), f"(C,) with C = {C} from W_hy (C, H)")
    return D, H, C


def check_inputs(params, xs, h0):
    """Validate params, xs and h0; return (xs, h0) as float64 with h0 (B, H)."""
    D, H, _ = check_params(params)
    xs = as_float_array("xs", xs)
    check_shape("xs", xs, (None, None, D), f"(T, B, D) with D = {D} from W_xh (H, D)")
    if xs.shape[0] == 0 or xs.shape[1] == 0:
        raise ValueError(f"xs has shape {xs.shape}: need at least one step and one sequence")
    B = xs.shape[1]
    if h0 is None:
        h0 = np.zeros((B, H))
    else:
        h0 = as_float_array("h0", h0)
        check_shape("h0", h0, (B, H), f"(B, H) with B = {B} from xs, H = {H}")
    return xs, h0


class StepCache(NamedTuple):
    """What step_backward needs from step_forward: cache.h_t, or by position cache[2]."""

    x_t: np.ndarray      # (B, D)
    h_prev: np.ndarray   # h_{t-1}, (B, H)
    h_t: np.ndarray      # (B, H)
    W_xh: np.ndarray     # (H, D)
    W_hh: np.ndarray     # (H, H)
    act: activations.Activation


def step_forward(x_t, h_prev, params, activation="tanh"):
    """One RNN step: h_t = phi(x_t @ W_xh.T + h_prev @ W_hh.T + b_h).

    Inputs:
    - x_t: inputs at step t, shape (B, D)
    - h_prev: hidden state h_{t-1}, shape (B, H)
    - params: dict with W_xh (H, D), W_hh (H, H), b_h (H,)
    - activation: "tanh", "relu" or "sigmoid"
    Returns:
    - h_t: shape (B, H)
    - cache: StepCache (x_t, h_prev, h_t, W_xh, W_hh, act) for step_backward
    """
    act = activations.get(activation)
    W_xh, W_hh = params["W_xh"], params["W_hh"]
    H, D = W_xh.shape
    x_t = as_float_array("x_t", x_t)
    check_shape("x_t", x_t, (None, D), f"(B, D) with D = {D} from W_xh (H, D)")
    h_prev = as_float_array("h_prev", h_prev)
    check_shape("h_prev", h_prev, (x_t.shape[0], H), f"(B, H) with B = {x_t.shape[0]} from x_t")
    h_t = act.f(x_t @ W_xh.T + h_prev @ W_hh.T + params["b_h"])
    return h_t, StepCache(x_t, h_prev, h_t, W_xh, W_hh, act)


def step_backward(dh_t, cache):
    """Backward through one RNN step.

    da_t = dh_t * phi'(a_t) (phi' from h_t);  dx_t = da_t @ W_xh;  dh_prev = da_t @ W_hh;
    dW_xh = da_t.T @ x_t;  dW_hh = da_t.T @ h_prev;  db_h = sum over the batch of da_t

    Inputs:
    - dh_t: dL/dh_t, the total gradient reaching h_t (from v_t and from step t+1), (B, H)
    - cache: the StepCache from step_forward (or a tuple in its order)
    Returns:
    - dx_t: (B, D)
    - dh_prev: dL/dh_{t-1} through this step, (B, H)
    - step_grads: dict W_xh (H, D), W_hh (H, H), b_h (H,): this step's contributions
    """
    x_t, h_prev, h_t, W_xh, W_hh, act = cache
    check_shape("dh_t", dh_t, h_t.shape, "(B, H), the shape of h_t")
    da_t = dh_t * act.df(h_t)
    step_grads = {"W_xh": da_t.T @ x_t, "W_hh": da_t.T @ h_prev, "b_h": da_t.sum(axis=0)}
    return da_t @ W_xh, da_t @ W_hh, step_grads


def hidden_states(params, xs, h0, activation="tanh"):
    """All hidden states h_0..h_T (no input checks; see `forward`).

    The input projection x_t @ W_xh.T + b_h is one matrix product for all steps;
    only the recurrent product h_{t-1} @ W_hh.T stays in the loop.

    Inputs: xs (T, B, D); h0 (B, H)
    Returns: hs (T+1, B, H) with hs[0] = h0
    """
    T, B, D = xs.shape
    f = activations.get(activation).f
    W_hh_T = params["W_hh"].T
    H = h0.shape[1]
    hs = np.empty((T + 1, B, H))
    hs[0] = h0
    a_rows = hs[1:].reshape(T * B, H)  # a view: the products are written straight into hs
    np.matmul(xs.reshape(T * B, D), params["W_xh"].T, out=a_rows)
    a_rows += params["b_h"]
    for t in range(1, T + 1):
        # hs[t] holds a_t until phi turns it into h_t.
        hs[t] += hs[t - 1] @ W_hh_T
        hs[t] = f(hs[t])
    return hs


def outputs(params, hs):
    """Outputs v_t = h_t @ W_hy.T + b_y for a stack of hidden states.

    Inputs: hs (T, B, H) (pass hs[1:] of `forward`'s result)
    Returns: vs (T, B, C)
    """
    T, B, H = hs.shape
    return (hs.reshape(T * B, H) @ params["W_hy"].T + params["b_y"]).reshape(T, B, -1)


def outputs_backward(params, h_out, dvs, steps):
    """Backward through v_t = h_t @ W_hy.T + b_y for n outputs on the last n steps.

    W_hy and b_y get the gradient of every output. The recurrence gets dv_t @ W_hy
    (dL/dh_t through v_t) only from the outputs inside the window of the last `steps`
    steps that `backward` runs through: all of them when n <= steps, else the last
    `steps` of them (TBPTT with k1 > k2).

    Inputs:
    - params: dict with W_hy (C, H)
    - h_out: the hidden states that produced the outputs, (n, B, H)
    - dvs: dL/dv_t of those outputs, (n, B, C)
    - steps: length S of the window that `backward` will run through
    Returns:
    - dh_out: (S, B, H), dL/dh_t through v_t only; zero at steps without an output
      in the window
    - grads: dict W_hy (C, H), b_y (C,)
    """
    n, B, H = h_out.shape
    dv_rows = dvs.reshape(n * B, -1)
    grads = {"W_hy": dv_rows.T @ h_out.reshape(n * B, H), "b_y": dv_rows.sum(axis=0)}
    inside = min(n, steps)
    dh_out = np.empty((steps, B, H))
    dh_out[:steps - inside] = 0.0
    # One product for all rows, written straight into dh_out (the reshape is a view).
    np.matmul(dv_rows[(n - inside) * B:], params["W_hy"],
              out=dh_out[steps - inside:].reshape(inside * B, H))
    return dh_out, grads


def forward(params, xs, h0=None, activation="tanh"):
    """Run the RNN over a batch of sequences.

    Inputs:
    - params: dict from init_params
    - xs: inputs, shape (T, B, D), time-major
    - h0: initial hidden state (B, H), zeros if None
    - activation: "tanh", "relu" or "sigmoid"
    Returns:
    - hs: hidden states, shape (T+1, B, H); hs[0] = h0, hs[t] = h_t
    - vs: outputs (logits for cross-entropy, predictions for MSE), shape (T, B, C)
    """
    known_name("activation", activation, activations.ACTIVATIONS)
    xs, h0 = check_inputs(params, xs, h0)
    hs = hidden_states(params, xs, h0, activation)
    return hs, outputs(params, hs[1:])


def check_targets(targets, loss, mode, T, B, C):
    """Validate targets for the loss and mode; return them as an array.

    cross_entropy: int (T, B) for many_to_many, (B,) for many_to_one.
    mse: float (T, B, C) for many_to_many, (B, C) for many_to_one.
    """
    check_loss_name(loss)
    known_name("mode", mode, MODES)
    steps = (T,) if mode == "many_to_many" else ()
    if loss == "cross_entropy":
        return class_targets("targets", targets, steps + (B,), C)
    return value_targets("targets", targets, steps + (B, C))


def loss_and_grad(vs, targets, loss):
    """Mean loss of outputs vs against targets, and dL/dvs.

    cross_entropy averages over the predictions (the rows of vs, every entry of
    targets); mse averages over all elements of vs.

    Inputs:
    - vs: outputs (..., C)
    - targets: int (...) for cross_entropy, float (..., C) for mse
    - loss: "cross_entropy" or "mse"
    Returns:
    - loss value (float), dvs of the shape of vs
    """
    check_loss_name(loss)
    C = vs.shape[-1]
    if loss == "cross_entropy":
        value, dv = cross_entropy(vs.reshape(-1, C), targets.reshape(-1))
    else:
        value, dv = mse(vs.reshape(-1, C), targets.reshape(-1, C))
    return value, dv.reshape(vs.shape)


def backward(params, xs, hs, dh_out, activation="tanh"):
    """BPTT through a whole stored sequence, given the gradient each h_t receives
    directly (from its output v_t).

    Going back in time, for t = T, ..., 1 (Python index t-1 for dh_out and xs):
        dh_t = dh_out[t-1] + dh_next           (dh_next: from step t+1, zero at t = T)
        da_t = dh_t * phi'(a_t)                (phi' computed from h_t = hs[t])
        dh_next = da_t @ W_hh                  (the part of dL/dh_{t-1} from step t)
    Then, with all da_t stacked as (T*B, H) rows, dW_xh = da.T @ x,
    dW_hh = da.T @ h_prev, db_h = sum of da: one product each.

    Inputs:
    - params: dict from init_params
    - xs: (T, B, D);  hs: (T+1, B, H) from forward
    - dh_out: (T, B, H), dh_out[t-1] = dL/dh_t through v_t only (dvs @ W_hy)
    - activation: the one used in the forward pass
    Returns:
    - grads: dict W_xh (H, D), W_hh (H, H), b_h (H,)
    - dh0: dL/dh_0, shape (B, H)
    """
    T, B, D = xs.shape
    W_hh = params["W_hh"]
    H = W_hh.shape[0]
    check_shape("hs", hs, (T + 1, B, H), f"(T+1, B, H) with T, B = {T}, {B} from xs: hs[0] is h_0")
    check_shape("dh_out", dh_out, (T, B, H), f"(T, B, H) with T, B = {T}, {B} from xs: "
                "dh_out[t-1] = dL/dh_t")
    df = activations.get(activation).df
    das = np.empty((T, B, H))
    dh_next = np.zeros((B, H))
    for t in range(T - 1, -1, -1):
        np.multiply(dh_out[t] + dh_next, df(hs[t + 1]), out=das[t])
        dh_next = das[t] @ W_hh
    da_rows = das.reshape(T * B, H)
    grads = {
        "W_xh": da_rows.T @ xs.reshape(T * B, D),
        "W_hh": da_rows.T @ hs[:-1].reshape(T * B, H),
        "b_h": da_rows.sum(axis=0),
    }
    return grads, dh_next


def bptt(params, xs, targets, h0=None, activation="tanh", loss="cross_entropy",
         mode="many_to_many"):
    """Loss and gradients of an RNN on a batch of sequences by BPTT.

    Inputs:
    - params: dict from init_params (D inputs, H hidden, C outputs)
    - xs: inputs (T, B, D), time-major
    - targets: many_to_many: int (T, B) for cross_entropy, float (T, B, C) for mse;
      many_to_one: int (B,) or float (B, C), the target of the last step
    - h0: initial hidden state (B, H), zeros if None
    - activation: "tanh", "relu" or "sigmoid"
    - loss: "cross_entropy" (mean over the T*B predictions) or "mse" (mean over all
      T*B*C elements); many_to_one: over the B (or B*C) of the last step
    - mode: "many_to_many" or "many_to_one"
    Returns:
    - loss: float
    - grads: dict keyed like params, same shapes
    - h_last: h_T, shape (B, H), to continue the sequence in a next call
    """
    known_name("activation", activation, activations.ACTIVATIONS)
    xs, h0 = check_inputs(params, xs, h0)
    T, B, _ = xs.shape
    C = params["W_hy"].shape[0]
    targets = check_targets(targets, loss, mode, T, B, C)

    hs = hidden_states(params, xs, h0, activation)
    # Only the hidden states that produce an output get W_hy and b_y gradients.
    h_out = hs[1:] if mode == "many_to_many" else hs[T:]
    vs = outputs(params, h_out)
    value, dvs = loss_and_grad(vs, targets, loss)
    dh_out, output_grads = outputs_backward(params, h_out, dvs, T)
    grads, _ = backward(params, xs, hs, dh_out, activation)
    grads.update(output_grads)
    return value, {k: grads[k] for k in PARAM_NAMES}, hs[T].copy()


def hidden_grad_norms(params, xs, targets, h0=None, activation="tanh", loss="cross_entropy"):
    """Norms of dL/dh_t for t = 0..T when the loss sits on the last step only.

    This is how far the error signal of the last output reaches back: norms[t]
    shrinking as T - t grows is a vanishing gradient, growing is an exploding one.

    Inputs: as bptt with mode="many_to_one" (targets (B,) int or (B, C) float)
    Returns:
    - norms: shape (T+1,), norms[t] = Frobenius norm of dL/dh_t over the batch (B, H);
      norms[T] is at lag 0, norms[0] (h_0) at lag T
    """
    known_name("activation", activation, activations.ACTIVATIONS)
    xs, h0 = check_inputs(params, xs, h0)
    T, B, _ = xs.shape
    C = params["W_hy"].shape[0]
    targets = check_targets(targets, loss, "many_to_one", T, B, C)
    hs = hidden_states(params, xs, h0, activation)
    _, dv = loss_and_grad(outputs(params, hs[T:]), targets, loss)
    df = activations.get(activation).df
    norms = np.empty(T + 1)
    dh = dv[0] @ params["W_hy"]
    norms[T] = np.linalg.norm(dh)
    for t in range(T, 0, -1):
        dh = (dh * df(hs[t])) @ params["W_hh"]
        norms[t - 1] = np.linalg.norm(dh)
    return norms


def sample(params, first_id, n, h=None, activation="tanh", temperature=1.0, seed=0):
    """Generate n symbols from a character-level RNN (one-hot inputs, D == C).

    Each step feeds the previous symbol as a one-hot x_t, computes
    p = softmax(v_t / temperature) and draws the next symbol from p.

    Inputs:
    - params: dict from init_params with D == C (the vocabulary size V)
    - first_id: int in [0, V), the symbol to start from
    - n: number of symbols to generate (>= 0)
    - h: hidden state to start from, shape (H,) or (1, H); zeros if None
    - activation: as in training;  temperature: > 0, lower is greedier
    - seed: for numpy's default_rng
    Returns:
    - ids: int64 array, shape (n,)
    """
    D, H, C = check_params(params)
    if D != C:
        raise ValueError(f"sample needs one-hot inputs over the outputs' symbols: D = {D} != C = {C}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    symbol = int_in_range("first_id (a symbol of the vocabulary)", first_id, 0, C - 1)
    n = int_in_range("n (symbols to generate)", n, 0, 10**7)
    h = np.zeros((1, H)) if h is None else np.atleast_2d(as_float_array("h", h))
    check_shape("h", h, (1, H), f"(one hidden state of H = {H} units, given as (H,) or (1, H))")
    rng = np.random.default_rng(seed)
    x = np.zeros((1, D))
    ids = np.empty(n, dtype=np.int64)
    for i in range(n):
        x[:] = 0.0
        x[0, symbol] = 1.0
        h, _ = step_forward(x, h, params, activation)
        v = (h @ params["W_hy"].T + params["b_y"])[0]
        symbol = ids[i] = rng.choice(C, p=softmax(v / temperature))
    return ids
