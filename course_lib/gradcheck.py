"""Gradient checking by central differences.

Pure functions: the parameters handed in are never modified; each perturbation is
made on a private copy, and f is always called with the parameters it should see.
"""

from dataclasses import dataclass

import numpy as np

from .validation import check_same_shape


def _copy(params):
    if isinstance(params, dict):
        return {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    return np.array(params, dtype=np.float64)


def numerical_gradient(f, params, eps=1e-6):
    """Central-difference gradient of a scalar function.

    df/dp_i ~ (f(p + eps e_i) - f(p - eps e_i)) / (2 eps), one entry at a time.

    Inputs:
    - f: function of `params` (same structure) returning a float
    - params: a float array, or a dict of float arrays
    - eps: step size
    Returns:
    - the gradient, same structure and shapes as params
    """
    if not isinstance(params, dict):
        return numerical_gradient(lambda p: f(p["x"]), {"x": params}, eps)["x"]
    grads = {}
    for name in params:
        work = _copy(params)
        x = work[name]
        grad = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            original = x[i]
            x[i] = original + eps
            f_plus = f(_copy(work))
            x[i] = original - eps
            f_minus = f(_copy(work))
            x[i] = original
            grad[i] = (f_plus - f_minus) / (2 * eps)
        grads[name] = grad
    return grads


def rel_error(a, b):
    """Relative error max|a - b| / max(max|a|, max|b|); 0.0 if both are zero.

    Scaled by the largest entry rather than entry by entry, so that entries near
    zero (where central differences leave rounding noise of ~1e-10) do not dominate.

    Inputs: a, b arrays of the same shape
    Returns: float
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare shapes {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)))
    return 0.0 if scale == 0 else float(np.max(np.abs(a - b)) / scale)


@dataclass
class GradCheckReport:
    """Per-parameter relative errors of an analytic gradient against central differences."""

    errors: dict

    @property
    def max_error(self):
        """The largest relative error; NaN if any is NaN, so that a NaN never passes."""
        return float(np.max(list(self.errors.values()), initial=0.0))

    def passed(self, tol=1e-6):
        """True if every parameter's relative error is below tol (NaN or inf fails)."""
        return bool(self.max_error < tol)

    def __str__(self):
        width = max([len("param")] + [len(k) for k in self.errors])
        lines = [f"{'param':<{width}}  rel. error"]
        lines += [f"{k:<{width}}  {e:.2e}" for k, e in self.errors.items()]
        return "\n".join(lines)


def check_gradients(f, params, analytic, eps=1e-6):
    """Compare analytic gradients with central differences, parameter by parameter.

    Inputs:
    - f: function of params returning a float (the loss)
    - params: dict of float arrays
    - analytic: dict of gradients, same keys and shapes
    - eps: step of the central differences
    Returns:
    - GradCheckReport; print it for a table, .passed(tol) for a verdict
    """
    for k in params:
        if k not in analytic:
            raise ValueError(f"analytic has no gradient for {k!r} (it has {list(analytic)}): "
                             "give one per parameter, with the keys of params")
        check_same_shape(f"analytic[{k!r}]", analytic[k], f"params[{k!r}]", params[k])
    numeric = numerical_gradient(f, params, eps)
    return GradCheckReport({k: rel_error(analytic[k], numeric[k]) for k in params})
