"""The course's RNN written in PyTorch (float64): the tests' independent reference,
differentiated by autograd. Shapes as in course_lib.rnn: xs (T, B, D), h (B, H),
params W_xh (H, D), W_hh (H, H), b_h (H,), W_hy (C, H), b_y (C,)."""
from __future__ import annotations

import numpy as np
import torch

PHI = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}


def leaves(params: dict, requires_grad: bool = True) -> dict:
    """{name: tensor} copies of the NumPy parameters."""
    return {k: torch.tensor(v, requires_grad=requires_grad) for k, v in params.items()}


def unroll(P: dict, xs, h, activation: str = "tanh", detach=lambda t: False) -> list:
    """[h_1, ..., h_T] from ``h`` (= h_0); the state entering step t is detached first
    (a constant for autograd) where ``detach(t)``."""
    hs = []
    for t, x_t in enumerate(torch.as_tensor(np.asarray(xs))):
        if detach(t):
            h = h.detach()
        h = PHI[activation](x_t @ P["W_xh"].T + h @ P["W_hh"].T + P["b_h"])
        hs.append(h)
    return hs


def output(P: dict, h):
    """v_t = W_hy h_t + b_y, (B, C)."""
    return h @ P["W_hy"].T + P["b_y"]


def loss(v, targets, kind: str = "cross_entropy"):
    """The mean loss of the outputs ``v`` (..., C): cross-entropy against class ids
    ``targets`` (...), or the squared error against ``targets`` of v's shape."""
    y = torch.as_tensor(np.asarray(targets))
    if kind == "cross_entropy":
        return torch.nn.functional.cross_entropy(v.reshape(-1, v.shape[-1]), y.reshape(-1))
    return torch.nn.functional.mse_loss(v, y)


def grads(P: dict) -> dict:
    return {k: P[k].grad.numpy() for k in P}
