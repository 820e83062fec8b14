"""Losses and their gradients: softmax, log-softmax, cross-entropy, MSE.

softmax, log_softmax and cross_entropy subtract the largest logit (along the class
axis) before exponentiating, so logits of +-1e4 give finite results.
"""

import numpy as np

from .validation import as_float_array, check_shape, class_targets, known_name, value_targets


def softmax(v, axis=-1):
    """Softmax along `axis`: exp(v) / sum(exp(v)), computed as exp(v - max v) / ...

    Inputs:
    - v: logits, any shape
    - axis: the class axis
    Returns:
    - probabilities, same shape as v, summing to 1 along `axis`
    """
    shifted = v - np.max(v, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(v, axis=-1):
    """log(softmax(v)) = v - max v - log(sum exp(v - max v)), finite for large |v|.

    Inputs:
    - v: logits, any shape
    - axis: the class axis
    Returns:
    - log-probabilities, same shape as v
    """
    shifted = v - np.max(v, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax_jacobian(y_hat):
    """Jacobian d softmax(v) / dv = diag(y_hat) - y_hat y_hat^T for one probability vector.

    Inputs:
    - y_hat: softmax output, shape (C,)
    Returns:
    - J, shape (C, C), J[i, j] = d y_hat_i / d v_j
    """
    y_hat = np.asarray(y_hat, dtype=np.float64)
    check_shape("y_hat", y_hat, (None,), "(C,): one probability vector")
    return np.diag(y_hat) - np.outer(y_hat, y_hat)


def cross_entropy(v, targets):
    """Mean cross-entropy of softmax(v) against class indices, and its gradient.

    loss = -(1/N) sum_n log softmax(v_n)[targets_n];  dv = (softmax(v) - onehot) / N

    Inputs:
    - v: logits, shape (N, C)
    - targets: int class indices, shape (N,), each in [0, C)
    Returns:
    - loss: float
    - dv: dloss/dv, shape (N, C)
    """
    v = as_float_array("v", v)
    check_shape("v", v, (None, None), "(N, C): one row of logits per prediction")
    n, c = v.shape
    targets = class_targets("targets", targets, (n,), c)
    # Written for speed on many rows (BPTT calls it once for all T*B predictions):
    # one exp, and dv is built in the array of the exponentials.
    rows = np.arange(n)
    shifted = v - np.max(v, axis=1, keepdims=True)
    target_logits = shifted[rows, targets]
    dv = np.exp(shifted, out=shifted)
    sums = dv.sum(axis=1)
    # -log softmax(v)[target] = log(sum exp(shifted)) - shifted[target]
    loss = np.sum(np.log(sums) - target_logits) / n
    dv *= (1.0 / (n * sums))[:, None]
    dv[rows, targets] -= 1.0 / n
    return float(loss), dv


def mse(y_hat, y):
    """Mean squared error over all elements, and its gradient.

    loss = mean((y_hat - y)^2);  dy_hat = 2 (y_hat - y) / y_hat.size

    Inputs:
    - y_hat: predictions, any shape
    - y: float targets, same shape
    Returns:
    - loss: float
    - dy_hat: dloss/dy_hat, same shape as y_hat
    """
    y_hat = as_float_array("y_hat", y_hat)
    y = value_targets("y", y, y_hat.shape)
    diff = y_hat - y
    return float(np.mean(diff * diff)), (2.0 / diff.size) * diff


LOSSES = ("cross_entropy", "mse")


def check_loss_name(name):
    """Return `name` if it is a known loss, else raise ValueError listing them."""
    return known_name("loss", name, LOSSES)
