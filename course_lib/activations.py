"""Activation functions and their derivatives.

The derivative `df` is written in terms of the activation's OUTPUT h = f(z), which
is what backpropagation has at hand (the cache keeps h_t, not a_t):
tanh: 1 - h^2,  sigmoid: h (1 - h),  relu: 1 where h > 0 else 0.
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .validation import known_name


def sigmoid(z):
    """Logistic function 1 / (1 + exp(-z)), elementwise, without overflow.

    Inputs:
    - z: array of any shape
    Returns:
    - array of the same shape, values in [0, 1]
    """
    z = np.asarray(z, dtype=np.float64)
    # exp(-|z|) <= 1 never overflows; the two branches are the same function.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def tanh(z):
    """Hyperbolic tangent, elementwise. Inputs: z any shape. Returns: same shape."""
    return np.tanh(z)


def relu(z):
    """max(z, 0), elementwise. Inputs: z any shape. Returns: same shape."""
    return np.maximum(z, 0.0)


def sigmoid_df(h):
    """Derivative of sigmoid from its output h: h (1 - h). Same shape as h."""
    return h * (1.0 - h)


def tanh_df(h):
    """Derivative of tanh from its output h: 1 - h^2. Same shape as h."""
    return 1.0 - h * h


def relu_df(h):
    """Derivative of relu from its output h: 1 where h > 0, else 0. Same shape as h."""
    return (h > 0).astype(np.float64)


@dataclass(frozen=True)
class Activation:
    """An activation f and its derivative df, the latter a function of h = f(z)."""

    name: str
    f: Callable
    df: Callable


ACTIVATIONS = {
    "sigmoid": Activation("sigmoid", sigmoid, sigmoid_df),
    "tanh": Activation("tanh", tanh, tanh_df),
    "relu": Activation("relu", relu, relu_df),
}


def get(name):
    """Return the Activation called `name` ("sigmoid", "tanh" or "relu").

    Raises ValueError listing the known names for anything else.
    """
    if isinstance(name, Activation):
        return name
    return ACTIVATIONS[known_name("activation", name, ACTIVATIONS)]
