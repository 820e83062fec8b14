"""Hypothesis strategies shared by the course_lib tests.

Hypothesis draws the sizes (including the edge cases T=1, B=1, H=1) and a seed;
NumPy draws the numbers from that seed. Shrinking then works on sizes, and the
data is never degenerate (all zeros would put ReLU exactly on its kink, where
central differences are meaningless).
"""

import numpy as np
from hypothesis import strategies as st

from course_lib import rnn

small = st.integers(1, 4)
seeds = st.integers(0, 2**32 - 1)
activation_names = st.sampled_from(["tanh", "relu", "sigmoid"])
loss_names = st.sampled_from(["cross_entropy", "mse"])
modes = st.sampled_from(["many_to_many", "many_to_one"])


@st.composite
def rnn_sizes(draw, max_T=5):
    """A dict T, B, D, H, C of small sizes, each >= 1."""
    return {
        "T": draw(st.integers(1, max_T)),
        "B": draw(small),
        "D": draw(small),
        "H": draw(small),
        "C": draw(st.integers(1, 4)),
    }


def make_targets(rng, loss, mode, T, B, C):
    """Random targets of the shape and dtype rnn.bptt expects."""
    steps = (T,) if mode == "many_to_many" else ()
    if loss == "cross_entropy":
        return rng.integers(0, C, steps + (B,))
    return rng.standard_normal(steps + (B, C))


def make_problem(sizes, seed, loss="cross_entropy", mode="many_to_many"):
    """params, xs (T, B, D), targets and a random h0 (B, H) for the given sizes."""
    T, B, D, H, C = (sizes[k] for k in "TBDHC")
    rng = np.random.default_rng(seed)
    params = rnn.init_params(D, H, C, seed=int(rng.integers(2**31)))
    # Nonzero biases so that their gradients are exercised too.
    params["b_h"] = 0.3 * rng.standard_normal(H)
    params["b_y"] = 0.3 * rng.standard_normal(C)
    xs = rng.standard_normal((T, B, D))
    h0 = 0.5 * rng.standard_normal((B, H))
    return params, xs, make_targets(rng, loss, mode, T, B, C), h0


@st.composite
def rnn_problems(draw, max_T=5, loss=None, mode=None):
    """(params, xs, targets, h0, activation, loss, mode) for a random small RNN."""
    loss = draw(loss_names) if loss is None else loss
    mode = draw(modes) if mode is None else mode
    sizes = draw(rnn_sizes(max_T))
    params, xs, targets, h0 = make_problem(sizes, draw(seeds), loss, mode)
    return params, xs, targets, h0, draw(activation_names), loss, mode
