"""Assignment 03_bptt: one step backward, full BPTT of a tanh RNN, the ReLU example."""
from __future__ import annotations

import numpy as np

from course_lib import rnn

from . import ExerciseSpec, MistakeEdit, Read, prelude

ASSIGNMENT = "03_bptt"
PRELUDE = prelude()

S_STEP = Read("03_bptt", "ch3-recursion")
S_RECURSION = Read("03_bptt", "ch3-recursion")
S_SUM = Read("03_bptt", "ch3-shared-weights")
S_LOSS = Read("03_bptt", "ch3-modes")
S_RELU = Read("03_bptt", "ch3-relu-example")
S_SLIP = Read("03_bptt", "ch3-wrong-step")

SOLUTIONS = {
    "rnn_step_backward": '''def rnn_step_backward(dh_t, x_t, h_prev, h_t, W_xh, W_hh):
    """Backward through one tanh RNN step h_t = tanh(x_t @ W_xh.T + h_prev @ W_hh.T + b_h).

    Inputs:
    - dh_t: dL/dh_t, everything that reaches h_t (from v_t and from step t+1), (B, H)
    - x_t: inputs of the step, (B, D)
    - h_prev: h_{t-1}, (B, H)
    - h_t: the step's output h_t, (B, H)
    - W_xh: (H, D);  W_hh: (H, H)
    Returns:
    - dx_t: dL/dx_t, (B, D)
    - dh_prev: dL/dh_{t-1} through this step, (B, H)
    - grads: dict with this step's W_xh (H, D), W_hh (H, H) and b_h (H,) gradients
    """
    # Read: Chapter 3, "The recursion for dL/dh_t" and "tanh and ReLU units" (tanh'(a_t) = 1 - h_t^2).
    ### BEGIN SOLUTION
    da_t = dh_t * (1 - h_t ** 2)
    dx_t = da_t @ W_xh
    dh_prev = da_t @ W_hh
    grads = {"W_xh": da_t.T @ x_t, "W_hh": da_t.T @ h_prev, "b_h": da_t.sum(axis=0)}
    return dx_t, dh_prev, grads
    ### END SOLUTION
''',
    "rnn_bptt": '''def rnn_bptt(params, xs, targets, h0, mode):
    """Loss and gradients of a tanh RNN with softmax cross-entropy, by BPTT.

    Forward: h_t = tanh(x_t @ W_xh.T + h_{t-1} @ W_hh.T + b_h),  v_t = h_t @ W_hy.T + b_y.
    many_to_many: a loss on every step, L = mean over the T*B predictions;
    many_to_one: a loss on the last step only, L = mean over its B predictions.

    Inputs:
    - params: dict W_xh (H, D), W_hh (H, H), b_h (H,), W_hy (C, H), b_y (C,)
    - xs: inputs, (T, B, D), time-major
    - targets: int classes, (T, B) for many_to_many, (B,) for many_to_one
    - h0: initial hidden state, (B, H)
    - mode: "many_to_many" or "many_to_one"
    Returns:
    - loss: float
    - grads: dict keyed like params, same shapes
    """
    # Read: Chapter 3, "The recursion for dL/dh_t" and "Shared weights: the gradient is a sum over time".
    ### BEGIN SOLUTION
    W_xh, W_hh, b_h = params["W_xh"], params["W_hh"], params["b_h"]
    W_hy, b_y = params["W_hy"], params["b_y"]
    T, B, _ = xs.shape
    hs = [h0]
    for t in range(T):
        hs.append(np.tanh(xs[t] @ W_xh.T + hs[-1] @ W_hh.T + b_h))
    out_steps = range(T) if mode == "many_to_many" else [T - 1]
    n = len(out_steps) * B
    rows = np.arange(B)
    loss = 0.0
    dvs = {}
    for t in out_steps:
        v = hs[t + 1] @ W_hy.T + b_y
        shifted = v - np.max(v, axis=1, keepdims=True)
        log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
        y_t = targets[t] if mode == "many_to_many" else targets
        loss -= np.sum(log_probs[rows, y_t]) / n
        dv = np.exp(log_probs)
        dv[rows, y_t] -= 1.0
        dvs[t] = dv / n
    grads = {k: np.zeros_like(p) for k, p in params.items()}
    dh_next = np.zeros_like(h0)
    for t in range(T - 1, -1, -1):
        dh = dh_next
        if t in dvs:
            grads["W_hy"] += dvs[t].T @ hs[t + 1]
            grads["b_y"] += dvs[t].sum(axis=0)
            dh = dh + dvs[t] @ W_hy
        da = dh * (1 - hs[t + 1] ** 2)
        grads["W_xh"] += da.T @ xs[t]
        grads["W_hh"] += da.T @ hs[t]
        grads["b_h"] += da.sum(axis=0)
        dh_next = da @ W_hh
    return loss, grads
    ### END SOLUTION
''',
    "relu_rnn_example": '''def relu_rnn_example(u, v, w, ys):
    """The ReLU exercise's scalar ReLU RNN: forward pass, loss and dL/du, dL/dv, dL/dw.

    h_0 = 0;  h_t = relu(w h_{t-1} + v y_{t-1});  y_hat_t = u h_t   for t = 1..T,
    L = (1/T) sum_t (y_hat_t - y_t)^2  (MSE: the mean over the T predictions).
    relu'(a) is 1 for a > 0 and 0 otherwise (also at a = 0).

    Inputs:
    - u, v, w: floats (output, input and recurrent weight)
    - ys: the sequence y_0, ..., y_T, shape (T+1,)
    Returns a dict:
    - "h": h_0..h_T, shape (T+1,);  "y_hat": y_hat_1..y_hat_T, shape (T,)
    - "losses": (y_hat_t - y_t)^2 for t = 1..T, shape (T,);  "loss": their mean
    - "du", "dv", "dw": the gradients of the loss (floats)
    """
    # Read: Chapter 3, "A worked example: a ReLU RNN on four numbers".
    ### BEGIN SOLUTION
    T = len(ys) - 1
    hs = np.zeros(T + 1)
    a = np.zeros(T + 1)
    for t in range(1, T + 1):
        a[t] = w * hs[t - 1] + v * ys[t - 1]
        hs[t] = max(a[t], 0.0)
    y_hats = u * hs[1:]
    losses = (y_hats - ys[1:]) ** 2
    dy_hat = 2 * (y_hats - ys[1:]) / T
    du = np.sum(dy_hat * hs[1:])
    dv = 0.0
    dw = 0.0
    dh_next = 0.0
    for t in range(T, 0, -1):
        dh = dy_hat[t - 1] * u + dh_next
        da = dh * (a[t] > 0)
        dw += da * hs[t - 1]
        dv += da * ys[t - 1]
        dh_next = da * w
    return {"h": hs, "y_hat": y_hats, "losses": losses, "loss": losses.mean(),
            "du": du, "dv": dv, "dw": dw}
    ### END SOLUTION
''',
}

MISTAKES = [
    MistakeEdit(
        "rnn_step_backward", "missing transpose of W_hh in the dh recursion",
        "In row-vector code a_t = h_prev @ W_hh.T, so dL/dh_prev = da_t @ W_hh "
        "(the math's W_hh^T da_t); da_t @ W_hh.T transposes twice.", S_RECURSION,
        (("dh_prev = da_t @ W_hh", "dh_prev = da_t @ W_hh.T"),)),
    MistakeEdit(
        "rnn_step_backward", "h_t used instead of h_{t-1} in dW_hh",
        "W_hh multiplies the PREVIOUS state in a_t = W_xh x_t + W_hh h_{t-1} + b_h, so "
        "dW_hh = da_t^T h_{t-1}.", S_STEP,
        (('"W_hh": da_t.T @ h_prev', '"W_hh": da_t.T @ h_t'),)),
    MistakeEdit(
        "rnn_step_backward", "tanh derivative taken at the wrong step",
        "dh_t/dh_{t-1} = diag(1 - h_t^2) W_hh: the derivative belongs to the step that "
        "h_{t-1} feeds into, so dL/dh_{t-1} = (dL/dh_t * (1 - h_t^2)) @ W_hh, with "
        "1 - h_t^2, not 1 - h_{t-1}^2.", S_SLIP,
        (("dh_prev = da_t @ W_hh", "dh_prev = (dh_t * (1 - h_prev ** 2)) @ W_hh"),)),
    MistakeEdit(
        "rnn_step_backward", "tanh derivative of h_{t-1} applied after W_hh",
        "Going back through step t multiplies by step t's derivative first: "
        "dL/dh_{t-1} = (dL/dh_t * (1 - h_t^2)) @ W_hh. Multiplying dL/dh_t @ W_hh by "
        "1 - h_{t-1}^2 instead is the slip of a widely read tutorial.", S_SLIP,
        (("dh_prev = da_t @ W_hh", "dh_prev = (dh_t @ W_hh) * (1 - h_prev ** 2)"),)),
    MistakeEdit(
        "rnn_bptt", "dh not carried into the previous step",
        "dL/dh_t has two parts: the one from the output v_t and the one arriving from "
        "step t+1 (dh_next = da_{t+1} @ W_hh). Add dh_next before going through tanh.",
        S_RECURSION,
        (("        dh = dh_next\n", "        dh = np.zeros_like(h0)\n"),)),
    MistakeEdit(
        "rnn_bptt", "gradients overwritten instead of summed over time",
        "W_xh, W_hh and b_h are shared by every step: their gradient is the SUM of the "
        "contributions of all T steps (use +=).", S_SUM,
        (('grads["W_xh"] += da.T', 'grads["W_xh"] = da.T'),
         ('grads["W_hh"] += da.T', 'grads["W_hh"] = da.T'),
         ('grads["b_h"] += da.sum', 'grads["b_h"] = da.sum'))),
    MistakeEdit(
        "rnn_bptt", "h_t used instead of h_{t-1} in dW_hh",
        "W_hh multiplies the PREVIOUS state in a_t, so dW_hh = sum_t da_t^T h_{t-1}, "
        "i.e. hs[t] for the step that computes hs[t + 1].", S_STEP,
        (('grads["W_hh"] += da.T @ hs[t]', 'grads["W_hh"] += da.T @ hs[t + 1]'),)),
    MistakeEdit(
        "rnn_bptt", "missing transpose of W_hh in the dh recursion",
        "In row-vector code a_t = h_{t-1} @ W_hh.T, so dh_next = da_t @ W_hh (the math's "
        "W_hh^T da_t).", S_RECURSION,
        (("dh_next = da @ W_hh", "dh_next = da @ W_hh.T"),)),
    MistakeEdit(
        "rnn_bptt", "tanh derivative taken at the wrong step",
        "dh_{t+1}/dh_t = diag(1 - h_{t+1}^2) W_hh: going back from step t+1 to step t "
        "multiplies by the derivative of step t+1, not 1 - h_t^2.", S_SLIP,
        (("dh_next = da @ W_hh", "dh_next = (dh * (1 - hs[t] ** 2)) @ W_hh"),)),
    MistakeEdit(
        "rnn_bptt", "tanh derivative of h_t applied after W_hh",
        "Going back from step t+1 to step t multiplies by the derivative of step t+1 "
        "first: dL/dh_t gets (dL/dh_{t+1} * (1 - h_{t+1}^2)) @ W_hh. Multiplying "
        "dL/dh_{t+1} @ W_hh by 1 - h_t^2 instead is the slip of a widely read tutorial.",
        S_SLIP,
        (("dh_next = da @ W_hh", "dh_next = (dh @ W_hh) * (1 - hs[t] ** 2)"),)),
    MistakeEdit(
        "rnn_bptt", "loss summed over time instead of averaged",
        "The many-to-many loss is the mean over all T*B predictions: divide by T*B, not "
        "by B only.", S_LOSS,
        (("n = len(out_steps) * B", "n = B"),)),
    MistakeEdit(
        "relu_rnn_example", "dL/dv computed without backpropagation through time",
        "v enters every h_t, and h_t feeds h_{t+1}: dL/dv needs the same recursion as "
        "dL/dw (the ReLU exercise claims otherwise; it is wrong).", S_RELU,
        (("dv += da * ys[t - 1]", "dv += dy_hat[t - 1] * u * (a[t] > 0) * ys[t - 1]"),)),
    MistakeEdit(
        "relu_rnn_example", "ReLU derivative treated as 1 everywhere",
        "relu'(a) is 0 where a <= 0: a step whose pre-activation is not positive passes "
        "no gradient back.", S_RELU,
        (("da = dh * (a[t] > 0)", "da = dh"),)),
]


# ---------------------------------------------------------------- references
def rnn_step_backward(dh_t, x_t, h_prev, h_t, W_xh, W_hh):
    cache = (x_t, h_prev, h_t, W_xh, W_hh, _tanh())
    return rnn.step_backward(dh_t, cache)


def _tanh():
    from course_lib import activations
    return activations.get("tanh")


def rnn_bptt(params, xs, targets, h0, mode):
    loss, grads, _ = rnn.bptt(params, xs, targets, h0=h0, activation="tanh",
                              loss="cross_entropy", mode=mode)
    return loss, grads


def relu_rnn_example(u, v, w, ys):
    """Through course_lib.rnn.bptt: the scalar net is an RNN with D = H = C = 1."""
    ys = np.asarray(ys, dtype=np.float64)
    T = len(ys) - 1
    params = {"W_xh": np.array([[v]]), "W_hh": np.array([[w]]), "b_h": np.zeros(1),
              "W_hy": np.array([[u]]), "b_y": np.zeros(1)}
    xs = ys[:-1].reshape(T, 1, 1)
    targets = ys[1:].reshape(T, 1, 1)
    hs, vs = rnn.forward(params, xs, activation="relu")
    loss, grads, _ = rnn.bptt(params, xs, targets, activation="relu", loss="mse")
    y_hat = vs.reshape(T)
    return {"h": hs.reshape(T + 1), "y_hat": y_hat, "losses": (y_hat - ys[1:]) ** 2,
            "loss": loss, "du": float(grads["W_hy"][0, 0]), "dv": float(grads["W_xh"][0, 0]),
            "dw": float(grads["W_hh"][0, 0])}


# ---------------------------------------------------------------- cases
def step_dims(case):
    (B, D), H = np.shape(case["x_t"]), np.shape(case["h_t"])[1]
    return {"B": B, "D": D, "H": H}


def seq_dims(case):
    T, B, D = np.shape(case["xs"])
    H, C = np.shape(case["params"]["W_hh"])[0], np.shape(case["params"]["W_hy"])[0]
    return {"T": T, "B": B, "D": D, "H": H, "C": C}


def relu_dims(case):
    return {"T": len(case["ys"]) - 1}


def _step_case(rng, B, D, H):
    W_xh = rng.standard_normal((H, D)) / np.sqrt(D)
    W_hh = rng.standard_normal((H, H)) / np.sqrt(H)
    x_t = rng.standard_normal((B, D))
    h_prev = np.tanh(rng.standard_normal((B, H)))
    h_t = np.tanh(x_t @ W_xh.T + h_prev @ W_hh.T + 0.1 * rng.standard_normal(H))
    return {"dh_t": rng.standard_normal((B, H)), "x_t": x_t, "h_prev": h_prev, "h_t": h_t,
            "W_xh": W_xh, "W_hh": W_hh}


def step_visible():
    W_xh = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # H = 3, D = 2
    W_hh = np.array([[0.5, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.5]])
    x_t = np.array([[1.0, 0.0]])
    h_prev = np.array([[0.5, -0.5, 0.0]])
    h_t = np.tanh(x_t @ W_xh.T + h_prev @ W_hh.T)
    case1 = {"dh_t": np.array([[1.0, 0.0, -1.0]]), "x_t": x_t, "h_prev": h_prev, "h_t": h_t,
             "W_xh": W_xh, "W_hh": W_hh}
    x2 = np.array([[1.0, 0.0], [0.0, 2.0]])
    h2_prev = np.array([[0.5, -0.5, 0.0], [0.0, 0.5, 0.5]])
    h2 = np.tanh(x2 @ W_xh.T + h2_prev @ W_hh.T)
    case2 = {"dh_t": np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]]), "x_t": x2,
             "h_prev": h2_prev, "h_t": h2, "W_xh": W_xh, "W_hh": W_hh}
    return [case1, case2]


def step_hidden(rng):
    return [_step_case(rng, B, D, H) for B, D, H in ((1, 3, 4), (5, 2, 3), (2, 1, 1), (3, 4, 6))]


def _bptt_case(rng, T, B, D, H, C, mode):
    params = rnn.init_params(D, H, C, seed=int(rng.integers(2**31)), scale=0.8)
    params["b_h"] = 0.1 * rng.standard_normal(H)
    params["b_y"] = 0.1 * rng.standard_normal(C)
    xs = rng.standard_normal((T, B, D))
    targets = rng.integers(0, C, (T, B) if mode == "many_to_many" else (B,))
    return {"params": params, "xs": xs, "targets": targets,
            "h0": 0.5 * np.tanh(rng.standard_normal((B, H))), "mode": mode}


def bptt_visible():
    """T = 3, B = 2, D = 2, H = 3, C = 2 with round numbers (section 3's small example)."""
    params = {"W_xh": np.array([[0.5, -0.5], [0.25, 0.5], [0.0, 1.0]]),
              "W_hh": np.array([[0.5, 0.25, 0.0], [-0.5, 0.0, 0.5], [0.25, 0.5, 0.25]]),
              "b_h": np.array([0.0, 0.1, -0.1]),
              "W_hy": np.array([[1.0, -1.0, 0.5], [-0.5, 0.5, 1.0]]),
              "b_y": np.array([0.0, 0.1])}
    xs = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [1.0, -1.0]],
                   [[0.0, 1.0], [1.0, 1.0]]])
    h0 = np.array([[0.0, 0.0, 0.0], [0.5, -0.5, 0.0]])
    return [{"params": params, "xs": xs, "targets": np.array([[0, 1], [1, 1], [0, 0]]),
             "h0": h0, "mode": "many_to_many"},
            {"params": params, "xs": xs, "targets": np.array([1, 0]), "h0": h0,
             "mode": "many_to_one"}]


def bptt_hidden(rng):
    shapes = ((5, 3, 4, 6, 3, "many_to_many"), (1, 1, 2, 3, 2, "many_to_many"),
              (6, 2, 3, 5, 4, "many_to_one"), (4, 1, 1, 2, 3, "many_to_one"),
              (3, 4, 2, 4, 2, "many_to_many"))
    return [_bptt_case(rng, *s) for s in shapes]


def relu_visible():
    """The ReLU exercise's example (all weights 0.5, y = 0, 1, -1, 2) and a variant in which
    every step is active."""
    return [{"u": 0.5, "v": 0.5, "w": 0.5, "ys": np.array([0.0, 1.0, -1.0, 2.0])},
            {"u": 0.5, "v": 0.5, "w": 0.5, "ys": np.array([1.0, 2.0, 1.0, 2.0])}]


def relu_hidden(rng):
    """A random sequence, one where every step is active (positive inputs and weights:
    the recursion matters for dv), one with a step forced inactive (a large negative
    input: relu' = 0 matters), and T = 1."""
    def weights(low_w):
        return {"u": float(rng.uniform(-1.5, 1.5)), "v": float(rng.uniform(0.2, 1.5)),
                "w": float(rng.uniform(low_w, 1.2))}

    random_case = dict(weights(-1.2), ys=np.round(rng.uniform(-1.0, 2.0, 7), 2))
    active = dict(weights(0.2), ys=np.round(rng.uniform(0.2, 2.0, 6), 2))
    inactive_ys = np.round(rng.uniform(0.2, 2.0, 8), 2)
    inactive_ys[int(rng.integers(1, 6))] = -100.0
    inactive = dict(weights(0.2), ys=inactive_ys)
    single = dict(weights(-1.2), ys=np.round(rng.uniform(0.2, 2.0, 2), 2))
    return [random_case, active, inactive, single]


EXERCISES_SPEC = [
    ExerciseSpec("rnn_step_backward", 3, rnn_step_backward, step_visible, step_hidden,
                 S_STEP, "dx_t, dh_prev and the step's weight gradients",
                 output_names=("dx_t", "dh_prev", "grads"), dims=step_dims),
    ExerciseSpec("rnn_bptt", 4, rnn_bptt, bptt_visible, bptt_hidden, S_RECURSION,
                 "loss and all gradients, many-to-many and many-to-one",
                 output_names=("loss", "grads"), dims=seq_dims),
    ExerciseSpec("relu_rnn_example", 2, relu_rnn_example, relu_visible, relu_hidden, S_RELU,
                 "the ReLU exercise's ReLU RNN: h, y_hat, losses and du, dv, dw", dims=relu_dims),
]
