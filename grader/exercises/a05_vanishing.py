"""Assignment 05_vanishing: gradient norms against lag, and global norm clipping."""
from __future__ import annotations

import numpy as np

from course_lib import optim, rnn

from . import ExerciseSpec, MistakeEdit, Read, prelude
from .a03_bptt import seq_dims

ASSIGNMENT = "05_vanishing"
PRELUDE = prelude()

S_PRODUCTS = Read("05_vanishing", "ch5-products")
S_CLIP = Read("05_vanishing", "ch5-clipping")
S_SLIP = Read("03_bptt", "ch3-wrong-step")

SOLUTIONS = {
    "hidden_grad_norms": '''def hidden_grad_norms(params, xs, targets, h0):
    """Norms of dL/dh_t for t = 0..T when the only loss sits on the last step.

    Loss: mean cross-entropy of softmax(v_T) over the batch, v_T = h_T @ W_hy.T + b_y,
    h_t = tanh(x_t @ W_xh.T + h_{t-1} @ W_hh.T + b_h).

    Inputs:
    - params: dict W_xh (H, D), W_hh (H, H), b_h (H,), W_hy (C, H), b_y (C,)
    - xs: inputs (T, B, D);  targets: int classes of the last step, (B,)
    - h0: initial hidden state (B, H)
    Returns:
    - norms: shape (T+1,); norms[t] = Frobenius norm of dL/dh_t (a (B, H) array), so
      norms[T] is at lag 0 and norms[0] (dL/dh_0) at lag T
    """
    # Read: Chapter 5, "Products of Jacobians".
    ### BEGIN SOLUTION
    W_xh, W_hh, b_h = params["W_xh"], params["W_hh"], params["b_h"]
    W_hy, b_y = params["W_hy"], params["b_y"]
    T, B, _ = xs.shape
    hs = [h0]
    for t in range(T):
        hs.append(np.tanh(xs[t] @ W_xh.T + hs[-1] @ W_hh.T + b_h))
    v = hs[T] @ W_hy.T + b_y
    shifted = v - np.max(v, axis=1, keepdims=True)
    dv = np.exp(shifted) / np.sum(np.exp(shifted), axis=1, keepdims=True)
    dv[np.arange(B), targets] -= 1.0
    dv /= B
    dh = dv @ W_hy
    norms = np.zeros(T + 1)
    norms[T] = np.linalg.norm(dh)
    for t in range(T, 0, -1):
        dh = (dh * (1 - hs[t] ** 2)) @ W_hh
        norms[t - 1] = np.linalg.norm(dh)
    return norms
    ### END SOLUTION
''',
    "clip_grad_norm": '''def clip_grad_norm(grads, max_norm):
    """Rescale ALL gradients together so that their total norm is at most max_norm.

    total_norm = sqrt(sum over every parameter of sum(g^2)); if it exceeds max_norm,
    every gradient is multiplied by max_norm / total_norm (the direction is kept).

    Inputs:
    - grads: dict of arrays (do not modify it)
    - max_norm: positive float
    Returns:
    - clipped: a new dict with the same keys and shapes
    - total_norm: the norm before clipping (float)
    """
    # Read: Chapter 5, "Exploding gradients and norm clipping".
    ### BEGIN SOLUTION
    total_norm = np.sqrt(sum(np.sum(g ** 2) for g in grads.values()))
    scale = min(1.0, max_norm / total_norm) if total_norm > 0 else 1.0
    clipped = {k: g * scale for k, g in grads.items()}
    return clipped, total_norm
    ### END SOLUTION
''',
}

MISTAKES = [
    MistakeEdit(
        "hidden_grad_norms", "missing transpose of W_hh in the dh recursion",
        "With rows, h_{t-1} enters a_t as h_{t-1} @ W_hh.T, so dL/dh_{t-1} = da_t @ W_hh "
        "(the math's W_hh^T da_t): the product of Jacobians uses W_hh^T.", S_PRODUCTS,
        (("(dh * (1 - hs[t] ** 2)) @ W_hh", "(dh * (1 - hs[t] ** 2)) @ W_hh.T"),)),
    MistakeEdit(
        "hidden_grad_norms", "tanh derivative taken at the wrong step",
        "dh_t/dh_{t-1} = diag(1 - h_t^2) W_hh: the derivative belongs to the step that "
        "h_{t-1} feeds into, h_t, not to h_{t-1} itself.", S_SLIP,
        (("(dh * (1 - hs[t] ** 2))", "(dh * (1 - hs[t - 1] ** 2))"),)),
    MistakeEdit(
        "hidden_grad_norms", "tanh derivative of h_{t-1} applied after W_hh",
        "Each step back multiplies by diag(1 - h_t^2), then W_hh: dL/dh_{t-1} = "
        "(dL/dh_t * (1 - h_t^2)) @ W_hh. Multiplying dL/dh_t @ W_hh by 1 - h_{t-1}^2 "
        "instead is the slip of a widely read tutorial.", S_SLIP,
        (("dh = (dh * (1 - hs[t] ** 2)) @ W_hh", "dh = (dh @ W_hh) * (1 - hs[t - 1] ** 2)"),)),
    MistakeEdit(
        "hidden_grad_norms", "tanh derivative left out (powers of W_hh only)",
        "Each step back multiplies by diag(1 - h_t^2) as well as W_hh: saturated units "
        "(|h| near 1) shrink the gradient further.", S_PRODUCTS,
        (("dh = (dh * (1 - hs[t] ** 2)) @ W_hh", "dh = dh @ W_hh"),)),
    MistakeEdit(
        "hidden_grad_norms", "loss summed over the batch (no 1/B)",
        "The loss is the MEAN cross-entropy over the B sequences of the batch, so "
        "dL/dv_T = (softmax - onehot) / B and every dL/dh_t carries that 1/B.", S_PRODUCTS,
        (("    dv /= B\n", ""),)),
    MistakeEdit(
        "clip_grad_norm", "clipped per parameter instead of by the global norm",
        "Norm clipping rescales all gradients by ONE factor computed from their total "
        "norm, so the update keeps its direction; clipping each array by its own norm "
        "changes the direction.", S_CLIP,
        (("clipped = {k: g * scale for k, g in grads.items()}",
          "clipped = {k: g * min(1.0, max_norm / max(np.linalg.norm(g), 1e-300))\n"
          "               for k, g in grads.items()}"),)),
    MistakeEdit(
        "clip_grad_norm", "clipped element by element (np.clip)",
        "Clipping every entry to [-max_norm, max_norm] changes the gradient's direction "
        "and does not bound its norm; rescale the whole gradient instead.", S_CLIP,
        (("clipped = {k: g * scale for k, g in grads.items()}",
          "clipped = {k: np.clip(g, -max_norm, max_norm) for k, g in grads.items()}"),)),
    MistakeEdit(
        "clip_grad_norm", "rescaled even when the norm is below max_norm",
        "Clipping only ever shrinks: if total_norm <= max_norm the gradients are returned "
        "unchanged (the factor is min(1, max_norm / total_norm)).", S_CLIP,
        (("min(1.0, max_norm / total_norm)", "max_norm / total_norm"),)),
]


# ---------------------------------------------------------------- references
def hidden_grad_norms(params, xs, targets, h0):
    return rnn.hidden_grad_norms(params, xs, targets, h0=h0, activation="tanh",
                                 loss="cross_entropy")


def clip_grad_norm(grads, max_norm):
    return optim.clip_grad_norm(grads, max_norm)


# ---------------------------------------------------------------- cases
def _norms_case(rng, T, B, D, H, C, scale):
    params = rnn.init_params(D, H, C, seed=int(rng.integers(2**31)), scale=scale)
    params["b_h"] = 0.1 * rng.standard_normal(H)
    return {"params": params, "xs": rng.standard_normal((T, B, D)),
            "targets": rng.integers(0, C, B), "h0": 0.5 * np.tanh(rng.standard_normal((B, H)))}


def norms_visible():
    """H = 2 with a non-symmetric W_hh, T = 4 steps: one sequence, then a batch of 3."""
    params = {"W_xh": np.array([[1.0], [0.5]]), "W_hh": np.array([[0.5, 1.0], [0.0, 0.5]]),
              "b_h": np.zeros(2), "W_hy": np.array([[1.0, 0.0], [0.0, 1.0]]),
              "b_y": np.zeros(2)}
    xs = np.array([1.0, 0.5, -0.5, 1.0]).reshape(4, 1, 1)
    xs3 = np.array([[1.0, -0.5, 0.25], [0.5, 0.0, -1.0], [-0.5, 1.0, 0.5],
                    [1.0, 0.5, -0.25]]).reshape(4, 3, 1)
    return [{"params": params, "xs": xs, "targets": np.array([0]), "h0": np.zeros((1, 2))},
            {"params": dict(params, W_hh=np.array([[1.5, -1.0], [0.5, 1.5]])), "xs": xs,
             "targets": np.array([1]), "h0": np.array([[0.5, -0.5]])},
            # a batch of three sequences: the loss is their mean
            {"params": params, "xs": xs3, "targets": np.array([0, 1, 1]),
             "h0": np.zeros((3, 2))}]


def norms_hidden(rng):
    shapes = ((10, 2, 3, 5, 3, 0.5), (12, 1, 2, 4, 2, 1.5), (1, 1, 1, 2, 2, 1.0),
              (8, 3, 2, 6, 4, 0.9))
    return [_norms_case(rng, *s) for s in shapes]


def _grads(rng, shapes, scale):
    return {k: scale * rng.standard_normal(s) for k, s in shapes.items()}


def clip_visible():
    """Total norm 5 (|W| = 3, |b| = 4) clipped to 1; a norm already below max_norm."""
    g = {"W": np.array([[2.0, 1.0], [2.0, 0.0]]), "b": np.array([4.0])}
    small = {"W": np.array([[0.3, 0.0]]), "b": np.array([0.4])}
    big_w = {"W": np.array([[30.0, 0.0], [0.0, 0.0]]), "b": np.array([0.5])}
    return [{"grads": g, "max_norm": 1.0}, {"grads": small, "max_norm": 1.0},
            {"grads": big_w, "max_norm": 2.0}]


def clip_hidden(rng):
    shapes = {"W_xh": (4, 3), "W_hh": (4, 4), "b_h": (4,), "W_hy": (2, 4), "b_y": (2,)}
    return [{"grads": _grads(rng, shapes, 5.0), "max_norm": 1.0},
            {"grads": _grads(rng, shapes, 0.05), "max_norm": 1.0},
            {"grads": _grads(rng, {"w": (1,)}, 3.0), "max_norm": 0.5},
            {"grads": _grads(rng, shapes, 2.0), "max_norm": float(rng.uniform(2.0, 6.0))}]


EXERCISES_SPEC = [
    ExerciseSpec("hidden_grad_norms", 3, hidden_grad_norms, norms_visible, norms_hidden,
                 S_PRODUCTS, "norms of dL/dh_t at every lag for a small RNN", dims=seq_dims),
    ExerciseSpec("clip_grad_norm", 2, clip_grad_norm, clip_visible, clip_hidden, S_CLIP,
                 "global norm clipping: a 3-4-5 example, a norm below the threshold",
                 output_names=("clipped", "total_norm")),
]
