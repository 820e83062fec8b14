"""Input checks shared by course_lib (internal).

Every error says what was expected, what was given, and what to do, so a student
who passes a wrong shape learns which convention the library follows.
"""

import numpy as np


def known_name(kind, name, known):
    """Return `name` if it is one of `known`, else raise ValueError listing them.

    Inputs:
    - kind: what the name is for, e.g. "activation"
    - name: the name given
    - known: iterable of the accepted names
    """
    known = sorted(known)
    if name not in known:
        raise ValueError(
            f"unknown {kind} {name!r}: choose one of {', '.join(repr(k) for k in known)}"
        )
    return name


def as_float_array(name, x):
    """Return `x` as a float64 array, raising if it holds NaN or inf.

    Inputs:
    - name: the argument's name, used in the message
    - x: array-like of numbers
    Returns:
    - array of float64, same shape as x
    """
    arr = np.asarray(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
    ):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {bad} NaN or inf value(s): check the data and the "
            "learning rate (a diverging run produces inf, then NaN)"
        )
    return arr


def check_shape(name, arr, expected, what=""):
    """Raise ValueError unless arr.shape matches `expected`.

    Inputs:
    - name: the argument's name
    - arr: the array
    - expected: tuple of ints; None in a position accepts any size
    - what: optional hint naming the symbols, e.g. "(T, B, D)"
    """
    shape = np.shape(arr)
    ok = len(shape) == len(expected) and all(
        e is None or e == s for e, s in zip(expected, shape)
    )
    if not ok:
        shown = "(" + ", ".join("any" if e is None else str(e) for e in expected)
        shown += ",)" if len(expected) == 1 else ")"
        hint = f" {what}" if what else ""
        raise ValueError(
            f"{name} has shape {shape}, expected {shown}{hint}; "
            "course_lib is time-major with batches of row vectors (see the notation page)"
        )


def check_same_shape(name, arr, like_name, like):
    """Raise ValueError unless arr has the shape of `like` (a gradient and its parameter).

    Inputs:
    - name: the argument's name, e.g. "analytic['W_xh']"
    - arr: the array to check
    - like_name: the name of the array whose shape it must have
    - like: that array
    """
    shape = np.shape(like)
    # Swapping rows and columns is the usual slip between the math and the code.
    transposed = len(shape) == 2 and shape[0] != shape[1] and np.shape(arr) == shape[::-1]
    check_shape(name, arr, shape,
                f"(the shape of {like_name}{': transposed?' if transposed else ''})")


def class_targets(name, targets, shape, num_classes):
    """Return integer class targets after checking dtype, shape and range.

    Inputs:
    - name: the argument's name
    - targets: array of class indices
    - shape: expected shape, e.g. (T, B)
    - num_classes: C; every target must lie in [0, C)
    Returns:
    - int64 array of `shape`
    """
    arr = np.asarray(targets)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"{name} must hold integer class indices for cross-entropy, got dtype "
            f"{arr.dtype}; use loss='mse' for real-valued targets, or .astype(int)"
        )
    check_shape(name, arr, shape)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}) (C = {num_classes} classes), "
            f"got values from {arr.min()} to {arr.max()}"
        )
    return arr.astype(np.int64, copy=False)


def value_targets(name, targets, shape):
    """Return real-valued targets (for MSE) after checking dtype, shape and finiteness.

    Inputs:
    - name: the argument's name
    - targets: array of floats
    - shape: expected shape, e.g. (T, B, C)
    Returns:
    - float64 array of `shape`
    """
    arr = np.asarray(targets)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(
            f"{name} must be a float array of target values for MSE, got dtype "
            f"{arr.dtype}; for class indices use loss='cross_entropy'"
        )
    check_shape(name, arr, shape)
    return as_float_array(name, arr)


def int_in_range(name, value, low, high):
    """Return `value` if it is an int with low <= value <= high, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value}")
    return int(value)
