"""Assignment 02_softmax: stable softmax, cross-entropy and its gradient, batched."""
from __future__ import annotations

import numpy as np

from course_lib import losses

from . import ExerciseSpec, MistakeEdit, Read, prelude

ASSIGNMENT = "02_softmax"
PRELUDE = prelude()

S_LOGITS = Read("02_softmax", "ch2-definition")
S_STABLE = Read("02_softmax", "ch2-stability")
S_JACOBIAN = Read("02_softmax", "ch2-jacobian")
S_CE = Read("02_softmax", "ch2-cross-entropy")
S_BATCH = Read("02_softmax", "ch2-batched")

SOLUTIONS = {
    "softmax": '''def softmax(v):
    """Softmax of every row of v, finite even for logits like 1e4.

    Inputs:
    - v: logits, shape (N, C), one row per example
    Returns:
    - y_hat: probabilities, shape (N, C); every row sums to 1
    """
    # Read: Chapter 2, "From logits to probabilities" and "Numerically stable log-softmax".
    ### BEGIN SOLUTION
    shifted = v - np.max(v, axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=1, keepdims=True)
    ### END SOLUTION
''',
    "cross_entropy": '''def cross_entropy(v, targets):
    """Mean cross-entropy of softmax(v) against class indices, and its gradient.

    loss = -(1/N) sum_n log softmax(v_n)[targets_n];   dv = (softmax(v) - onehot) / N

    Inputs:
    - v: logits, shape (N, C)
    - targets: int class indices, shape (N,), each in 0..C-1
    Returns:
    - loss: float
    - dv: dloss/dv, shape (N, C)
    """
    # Read: Chapter 2, "Cross-entropy, and why dE/dv = y_hat - t" and "The batched form".
    ### BEGIN SOLUTION
    N = v.shape[0]
    rows = np.arange(N)
    shifted = v - np.max(v, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    loss = -np.mean(log_probs[rows, targets])
    dv = np.exp(log_probs)
    dv[rows, targets] -= 1.0
    dv /= N
    return loss, dv
    ### END SOLUTION
''',
    "softmax_backward": '''def softmax_backward(y_hat, dy_hat):
    """Backpropagate through the softmax: dv = J^T dy_hat for every row.

    With J = diag(y_hat) - y_hat y_hat^T (one row of the batch), this is
    dv = y_hat * (dy_hat - sum_j dy_hat_j y_hat_j), without building J.

    Inputs:
    - y_hat: softmax outputs, shape (N, C)
    - dy_hat: dL/dy_hat, shape (N, C)
    Returns:
    - dv: dL/dv, shape (N, C)
    """
    # Read: Chapter 2, "The softmax Jacobian".
    ### BEGIN SOLUTION
    return y_hat * (dy_hat - np.sum(dy_hat * y_hat, axis=1, keepdims=True))
    ### END SOLUTION
''',
}

MISTAKES = [
    MistakeEdit(
        "softmax", "no max-subtraction (exp overflows)",
        "exp(1000) is inf in float64 and inf/inf is NaN. Subtract each row's maximum "
        "before exponentiating: the result is the same, and every exponent is <= 0.",
        S_STABLE,
        (("shifted = v - np.max(v, axis=1, keepdims=True)", "shifted = v"),)),
    MistakeEdit(
        "softmax", "normalised over the batch axis",
        "Each ROW of v is one example: sum the exponentials along axis 1 (the classes), "
        "not axis 0 (the examples).", S_BATCH,
        (("np.max(v, axis=1, keepdims=True)", "np.max(v, axis=0, keepdims=True)"),
         ("np.sum(e, axis=1, keepdims=True)", "np.sum(e, axis=0, keepdims=True)"))),
    MistakeEdit(
        "cross_entropy", "summed over the batch instead of averaged",
        "The loss is the MEAN over the N predictions, so both the loss and dv carry a "
        "factor 1/N.", S_BATCH,
        (("loss = -np.mean(", "loss = -np.sum("), ("    dv /= N\n", ""))),
    MistakeEdit(
        "cross_entropy", "sign flip in dv (one-hot minus softmax)",
        "dE/dv = y_hat - t (prediction minus target): the correct class gets a negative "
        "entry, the others positive ones.", S_CE,
        (("    dv /= N\n", "    dv = -dv / N\n"),)),
    MistakeEdit(
        "cross_entropy", "one-hot target not subtracted in dv",
        "The gradient of -log y_hat_c with respect to the logits is y_hat - t: subtract 1 "
        "at each row's correct class.", S_CE,
        (("    dv[rows, targets] -= 1.0\n", ""),)),
    MistakeEdit(
        "cross_entropy", "log of the softmax instead of log-softmax",
        "softmax(v) underflows to 0 for a class far below the best one, and log(0) = "
        "-inf: the loss becomes inf. Compute log-probabilities directly: v - max - "
        "log(sum(exp(v - max))).", S_STABLE,
        (("log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))",
          "log_probs = np.log(np.exp(shifted) / np.sum(np.exp(shifted), axis=1, keepdims=True))"),)),
    MistakeEdit(
        "cross_entropy", "one subtracted in every row at every target column",
        "dv[:, targets] selects the target columns in ALL rows; subtract 1 only at each "
        "row's own target: dv[np.arange(N), targets] -= 1.", S_CE,
        (("    dv[rows, targets] -= 1.0\n", "    dv[:, targets] -= 1.0\n"),)),
    MistakeEdit(
        "softmax_backward", "only the diagonal of the softmax Jacobian",
        "Every output y_hat_i depends on every logit v_j: J = diag(y_hat) - y_hat y_hat^T "
        "has off-diagonal terms -y_hat_i y_hat_j, which give the - sum_j dy_hat_j y_hat_j "
        "part.", S_JACOBIAN,
        (("y_hat * (dy_hat - np.sum(dy_hat * y_hat, axis=1, keepdims=True))",
          "y_hat * (1 - y_hat) * dy_hat"),)),
]


# ---------------------------------------------------------------- references
def softmax(v):
    return losses.softmax(v, axis=1)


def cross_entropy(v, targets):
    return losses.cross_entropy(v, targets)


def softmax_backward(y_hat, dy_hat):
    # row by row through the explicit Jacobian of the book
    return np.stack([losses.softmax_jacobian(y).T @ d for y, d in zip(y_hat, dy_hat)])


# ---------------------------------------------------------------- cases
def batch_dims(case):
    n, c = np.shape(case.get("v", case.get("y_hat")))
    return {"N": n, "C": c}


SHAPES = ((1, 3), (4, 2), (7, 5), (3, 4))


def _logits(rng, n, c, scale=2.0):
    return scale * rng.standard_normal((n, c))


def softmax_visible():
    # the BPTT tutorial's outputs y = [0.8, 0.2] come from logits [log 4, 0]
    return [{"v": np.array([[np.log(4.0), 0.0], [1000.0, 1000.0], [-1e4, 0.0]])},
            {"v": np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])}]


def softmax_hidden(rng):
    cases = [{"v": _logits(rng, n, c)} for n, c in SHAPES]
    # logits near 1000: exp overflows unless the row maximum is subtracted
    cases.append({"v": 1000.0 + _logits(rng, 3, 4, scale=5.0)})
    return cases


def ce_visible():
    return [
        # the BPTT tutorial: y = [0.8, 0.2], class 0 (the source's "class 1") -> dv = [-0.2, 0.2]
        {"v": np.array([[np.log(4.0), 0.0]]), "targets": np.array([0])},
        {"v": np.array([[np.log(4.0), 0.0], [0.0, 0.0], [1000.0, 0.0]]),
         "targets": np.array([0, 1, 1])},
    ]


def ce_hidden(rng):
    cases = []
    for n, c in SHAPES + ((5, 3),):
        scale = 1e3 if (n, c) == (5, 3) else 2.0
        cases.append({"v": _logits(rng, n, c, scale), "targets": rng.integers(0, c, n)})
    # a correct class 1000 below the best logit: its probability underflows to 0
    extreme = cases[-1]
    row, target = extreme["v"][0], extreme["targets"][0]
    row[target] = np.delete(row, target).max() - 1000.0
    return cases


def sb_visible():
    return [
        # dE/dy_hat of E = -log y_hat_0 at y_hat = [0.8, 0.2]: [-1/0.8, 0] -> dv = [-0.2, 0.2]
        {"y_hat": np.array([[0.8, 0.2]]), "dy_hat": np.array([[-1.25, 0.0]])},
        {"y_hat": np.array([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]]),
         "dy_hat": np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]])},
    ]


def sb_hidden(rng):
    cases = []
    for n, c in SHAPES:
        cases.append({"y_hat": losses.softmax(_logits(rng, n, c)),
                      "dy_hat": rng.standard_normal((n, c))})
    return cases


EXERCISES_SPEC = [
    ExerciseSpec("softmax", 2, softmax, softmax_visible, softmax_hidden, S_STABLE,
                 "rows sum to one; the BPTT tutorial's [0.8, 0.2]; logits of 1000 stay finite",
                 dims=batch_dims),
    ExerciseSpec("cross_entropy", 3, cross_entropy, ce_visible, ce_hidden, S_CE,
                 "loss and dv; the BPTT tutorial's example gives dv = [-0.2, 0.2]",
                 output_names=("loss", "dv"), dims=batch_dims),
    ExerciseSpec("softmax_backward", 2, softmax_backward, sb_visible, sb_hidden, S_JACOBIAN,
                 "J^T dy_hat row by row; the BPTT tutorial's example again gives [-0.2, 0.2]",
                 dims=batch_dims),
]
