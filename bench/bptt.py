"""Time course_lib's BPTT against PyTorch CPU eager autograd and the matrix-product floor.

One run prints, for each size (T, B, D, H, C), the best of several repeats of
- course_lib.rnn.bptt (tanh RNN, softmax cross-entropy over all T*B predictions,
  float64, input checks included);
- the same computation in PyTorch eager mode (float64, autograd);
- the bare matrix products BPTT cannot avoid: the input, recurrent and output
  products of the forward pass, and the backward products for dh, dW_xh, dW_hh,
  dW_hy (no elementwise work, no loss, no allocation of results);
and the ratios between them. Timings on a shared machine are noisy: compare
within one run.

NumPy's OpenBLAS honours OPENBLAS_CORETYPE (this environment may pin an older
kernel set); the line "numpy BLAS" says what was in force.

Usage: python bench/bptt.py [--repeats N]
"""

import argparse
import os
import time

import numpy as np
import torch

from course_lib import rnn

SIZES = [(64, 32, 64, 128, 64), (256, 64, 128, 256, 128)]


def best_times(fns, repeats):
    """Smallest wall time of each function over `repeats` rounds.

    The functions take turns within each round, so that load from elsewhere on
    the machine falls on all of them alike; one warm-up call each first.
    """
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def make_problem(T, B, D, H, C, seed=0):
    rng = np.random.default_rng(seed)
    params = rnn.init_params(D, H, C, seed=seed)
    xs = rng.standard_normal((T, B, D))
    targets = rng.integers(0, C, (T, B))
    return params, xs, targets


def course_lib_bptt(params, xs, targets):
    return lambda: rnn.bptt(params, xs, targets)


def torch_bptt(params, xs, targets):
    P = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    x, y = torch.tensor(xs), torch.tensor(targets)
    T, B, _ = xs.shape

    def run():
        for p in P.values():
            p.grad = None
        h = torch.zeros(B, P["W_hh"].shape[0], dtype=torch.float64)
        hs = []
        for t in range(T):
            h = torch.tanh(x[t] @ P["W_xh"].T + h @ P["W_hh"].T + P["b_h"])
            hs.append(h)
        v = torch.stack(hs) @ P["W_hy"].T + P["b_y"]
        loss = torch.nn.functional.cross_entropy(v.reshape(T * B, -1), y.reshape(-1))
        loss.backward()
        return loss

    return run


def matmul_floor(params, xs):
    """Only the products of BPTT, into preallocated outputs."""
    T, B, D = xs.shape
    H, C = params["W_hh"].shape[0], params["W_hy"].shape[0]
    rng = np.random.default_rng(1)
    x_rows = xs.reshape(T * B, D)
    h_rows = rng.standard_normal((T * B, H))
    da_rows = rng.standard_normal((T * B, H))
    dv_rows = rng.standard_normal((T * B, C))
    W_xh_T, W_hh_T, W_hy_T = (params[k].T.copy() for k in ("W_xh", "W_hh", "W_hy"))
    W_hh, W_hy = params["W_hh"], params["W_hy"]
    a_rows, v_rows, dh_rows = np.empty((T * B, H)), np.empty((T * B, C)), np.empty((T * B, H))
    step_out = np.empty((B, H))
    dW_xh, dW_hh, dW_hy = np.empty((H, D)), np.empty((H, H)), np.empty((C, H))

    def run():
        np.matmul(x_rows, W_xh_T, out=a_rows)
        for t in range(T):
            np.matmul(h_rows[t * B:(t + 1) * B], W_hh_T, out=step_out)
        np.matmul(h_rows, W_hy_T, out=v_rows)
        np.matmul(dv_rows, W_hy, out=dh_rows)
        for t in range(T):
            np.matmul(da_rows[t * B:(t + 1) * B], W_hh, out=step_out)
        np.matmul(da_rows.T, x_rows, out=dW_xh)
        np.matmul(da_rows.T, h_rows, out=dW_hh)
        np.matmul(dv_rows.T, h_rows, out=dW_hy)

    return run


def check_same_computation(params, xs, targets):
    """The timed computations agree (so the comparison is fair)."""
    loss, _, _ = rnn.bptt(params, xs, targets)
    t_loss = torch_bptt(params, xs, targets)()
    assert abs(loss - t_loss.item()) < 1e-9 * abs(loss)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    blas_env = {k: os.environ.get(k, "(unset)") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    print(f"numpy {np.__version__} BLAS env {blas_env}; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads, float64); best of {args.repeats} repeats")
    header = f"{'T, B, D, H, C':<22}{'course_lib':>12}{'torch eager':>13}{'matmul floor':>14}" \
             f"{'torch / ours':>14}{'ours / floor':>14}"
    print(header)
    for T, B, D, H, C in SIZES:
        params, xs, targets = make_problem(T, B, D, H, C)
        check_same_computation(params, xs, targets)
        ours, eager, floor = best_times(
            [course_lib_bptt(params, xs, targets), torch_bptt(params, xs, targets),
             matmul_floor(params, xs)], args.repeats)
        print(f"{str((T, B, D, H, C)):<22}{ours * 1e3:>10.2f}ms{eager * 1e3:>11.2f}ms"
              f"{floor * 1e3:>12.2f}ms{eager / ours:>13.2f}x{ours / floor:>13.2f}x")


if __name__ == "__main__":
    main()
