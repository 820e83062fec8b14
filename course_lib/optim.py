"""Optimisers (updating parameter dicts in place) and gradient-norm clipping.

Sign convention: Delta w = -lr * dL/dw + momentum * Delta w_prev;  w <- w + Delta w.
"""

import numpy as np

from .validation import check_same_shape


def _check_gradients(params, grads):
    """Raise ValueError unless every parameter has a finite gradient of its shape.

    Unchecked, a wrong shape would broadcast silently into the parameter and a NaN
    would spread into every later step.
    """
    for k in params:
        if k not in grads:
            raise ValueError(f"grads has no gradient for {k!r} (it has {list(grads)}): "
                             "give one per parameter, with the keys of params")
        if np.shape(grads[k]) != np.shape(params[k]):
            check_same_shape(f"the gradient of {k}", grads[k], k, params[k])  # raises
        if not np.isfinite(grads[k]).all():
            raise ValueError(f"the gradient of {k} is not finite (NaN or inf): lower the "
                             "learning rate, or clip the gradients (optim.clip_grad_norm)")


class SGD:
    """Plain gradient descent: w <- w - lr * dL/dw."""

    def __init__(self, lr):
        self.lr = lr

    def step(self, params, grads):
        """Update params (dict of arrays) in place from grads (same keys); return params."""
        _check_gradients(params, grads)  # all of them, before any update
        for k in params:
            params[k] -= self.lr * grads[k]
        return params


class Momentum:
    """Gradient descent with momentum: Delta w = -lr * dL/dw + momentum * Delta w_prev."""

    def __init__(self, lr, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.updates = {}  # Delta w of the previous step, per parameter

    def step(self, params, grads):
        """Update params (dict of arrays) in place from grads (same keys); return params."""
        _check_gradients(params, grads)  # all of them, before any update
        for k in params:
            prev = self.updates.get(k, 0.0)
            self.updates[k] = -self.lr * grads[k] + self.momentum * prev
            params[k] += self.updates[k]
        return params


def grad_norm(grads):
    """Total norm sqrt(sum over all parameters of sum(g^2)) of a dict of gradients."""
    return float(np.sqrt(sum(np.sum(np.square(g)) for g in grads.values())))


def clip_grad_norm(grads, max_norm):
    """Rescale gradients so that their total norm is at most max_norm.

    total_norm = sqrt(sum over all parameters of sum(g^2)); if it exceeds max_norm,
    every gradient is multiplied by max_norm / total_norm (the direction is kept).

    Inputs:
    - grads: dict of arrays
    - max_norm: positive float
    Returns:
    - clipped: a new dict of arrays (grads is not modified)
    - total_norm: the norm before clipping (float)
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    total_norm = grad_norm(grads)
    if not np.isfinite(total_norm):  # no factor can make NaN or inf finite
        bad = [k for k, g in grads.items() if not np.isfinite(g).all()]
        what = f"the gradient of {', '.join(bad)} holds NaN or inf" if bad \
            else "the gradients' total norm overflows"
        raise ValueError(f"{what}: clipping cannot rescale it; lower the learning rate, or "
                         "clip from the first update on so that the weights never diverge")
    factor = min(1.0, max_norm / total_norm) if total_norm > 0 else 1.0
    return {k: g * factor for k, g in grads.items()}, total_norm
