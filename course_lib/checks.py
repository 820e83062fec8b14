"""`check`: the one function every test cell of an assignment calls.

    check("03_bptt", "rnn_step_backward", rnn_step_backward)              # visible cases
    check("03_bptt", "rnn_step_backward", rnn_step_backward, hidden=True) # hidden cases

Two modes, chosen by the environment:

* Student mode (``COURSE_RECORD_DIR`` unset): the function runs on the exercise's
  cases, the outputs are judged right here by ``grader.judge`` (the same code the
  grader uses) and the cell prints a pass line or raises ``AssertionError`` with a
  diagnosis ("looks like: a missing transpose ... Read: Chapter 3, ...").
* Grading mode (``COURSE_RECORD_DIR`` set by the grader): the case inputs are read
  from ``COURSE_CASES_DIR``, the function runs on them and its outputs are saved as a
  record file in ``COURSE_RECORD_DIR``. Nothing is decided here: the grader compares
  the record with reference values in its own process after the notebook has run and
  rewrites the cell's output. Until it does, the cell carries a stderr line, so a
  notebook graded without that verdict step scores 0 (fail closed).

This module is also the wire format between the grader and the kernel (``encode`` /
``decode``: ``.npz`` files of float/int arrays plus one JSON string, never pickles),
so it imports nothing but NumPy and the standard library: in the grading sandbox the
kernel cannot see the ``grader`` package.
"""
from __future__ import annotations

import copy
import io
import json
import numbers
import os
import sys
import warnings

import numpy as np

__all__ = ["check", "encode", "decode", "run_cases", "record_name", "cases_name"]

FORMAT_VERSION = 1
RECORD_MAX_BYTES = 64 * 1024 * 1024


def record_name(assignment: str, name: str, hidden: bool) -> str:
    """File name of the record of one check call (the grader looks for exactly this)."""
    return f"{assignment}__{name}__{'hidden' if hidden else 'visible'}.npz"


def cases_name(assignment: str, name: str, hidden: bool) -> str:
    """File name of the case inputs the grader writes for one check call."""
    return f"{assignment}__{name}__{'hidden' if hidden else 'visible'}.cases.npz"


# ---------------------------------------------------------------------------- encoding
def _encode_value(value, arrays: dict, prefix: str):
    """JSON-able description of a case input, arrays moved into ``arrays``."""
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"k": "arr", "key": key}
    if isinstance(value, (bool, np.bool_)):
        return {"k": "json", "v": bool(value)}
    if isinstance(value, (numbers.Integral, np.integer)):
        return {"k": "json", "v": int(value)}
    if isinstance(value, (numbers.Real, np.floating)):
        return {"k": "float", "v": repr(float(value))}
    if value is None or isinstance(value, str):
        return {"k": "json", "v": value}
    if isinstance(value, dict):
        return {"k": "dict", "keys": [str(k) for k in value],
                "items": [_encode_value(v, arrays, prefix) for v in value.values()]}
    if isinstance(value, (tuple, list)):
        return {"k": type(value).__name__,
                "items": [_encode_value(v, arrays, prefix) for v in value]}
    raise TypeError(f"cannot encode a case value of type {type(value).__name__}")


def _decode_value(desc, arrays):
    kind = desc["k"]
    if kind == "arr":
        return np.array(arrays[desc["key"]])  # a fresh copy per call
    if kind == "json":
        return desc["v"]
    if kind == "float":
        return float(desc["v"])
    if kind == "dict":
        return {k: _decode_value(v, arrays) for k, v in zip(desc["keys"], desc["items"])}
    if kind in ("tuple", "list"):
        items = [_decode_value(v, arrays) for v in desc["items"]]
        return tuple(items) if kind == "tuple" else items
    raise ValueError(f"unknown value kind {kind!r}")


def encode(meta: dict, arrays: dict) -> bytes:
    """An ``.npz`` file (bytes) holding ``arrays`` plus ``meta`` as one JSON string."""
    buf = io.BytesIO()
    payload = {f"x_{k}": np.ascontiguousarray(v) for k, v in arrays.items()}
    payload["meta"] = np.array(json.dumps(meta))
    np.savez(buf, **payload)
    return buf.getvalue()


def decode(data: bytes) -> tuple[dict, dict]:
    """Inverse of ``encode`` (``allow_pickle=False``: object arrays are refused)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"][()]))
        arrays = {k[2:]: npz[k] for k in npz.files if k.startswith("x_")}
    if not isinstance(meta, dict):
        raise ValueError("record metadata is not a JSON object")
    return meta, arrays


def encode_cases(cases: list[dict]) -> bytes:
    arrays: dict = {}
    described = [_encode_value(dict(case), arrays, f"c{i}") for i, case in enumerate(cases)]
    return encode({"version": FORMAT_VERSION, "cases": described}, arrays)


def decode_cases(data: bytes) -> list[dict]:
    meta, arrays = decode(data)
    return [_decode_value(d, arrays) for d in meta["cases"]]


# ---------------------------------------------------------------------------- outputs
def _is_scalar(x) -> bool:
    return isinstance(x, (numbers.Number, np.number, np.bool_)) or (
        isinstance(x, np.ndarray) and x.ndim == 0)


def _output_struct(value, arrays: dict):
    """Describe a function's return value: arrays become float64, containers are kept.

    Tuples and lists of arrays stay sequences (a list of plain numbers is one array);
    dicts keep their keys; anything that cannot become a float array is recorded by
    its type name only (the judge then says what was expected)."""
    if isinstance(value, dict):
        return {"t": "dict", "keys": [str(k) for k in value.keys()],
                "items": [_output_struct(v, arrays) for v in value.values()]}
    if isinstance(value, (tuple, list)) and not (value and all(_is_scalar(v) for v in value)):
        return {"t": "seq", "items": [_output_struct(v, arrays) for v in value]}
    if value is None:
        return {"t": "bad", "type": "None"}
    if isinstance(value, np.ndarray) and value.dtype.kind == "c" or isinstance(value, complex):
        return {"t": "bad", "type": "complex"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.array(value, dtype=np.float64)
    except Exception:  # noqa: BLE001 - any object that is not numeric
        return {"t": "bad", "type": type(value).__name__}
    key = f"o{len(arrays)}"
    arrays[key] = arr
    return {"t": "leaf", "key": key}


def _describe_exception(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 2000 else text[:2000] + " ..."


def run_cases(fn, cases: list[dict]) -> bytes:
    """Call ``fn(**case)`` on each case (a fresh copy of the inputs each time) and
    return the record: what it returned, or the exception it raised, per case."""
    arrays: dict = {}
    results = []
    for case in cases:
        kwargs = copy.deepcopy(case)
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                # a RuntimeWarning on stderr would make nbgrader fail a passing cell
                warnings.simplefilter("ignore")
                value = fn(**kwargs)
        except Exception as exc:  # noqa: BLE001 - the judge reports it
            results.append({"status": "raised", "error": _describe_exception(exc),
                            "not_implemented": isinstance(exc, NotImplementedError)})
            continue
        results.append({"status": "ok", "out": _output_struct(value, arrays)})
    return encode({"version": FORMAT_VERSION, "results": results}, arrays)


# ---------------------------------------------------------------------------- check
def _grading_mode(assignment: str, name: str, fn, hidden: bool) -> None:
    record_dir = os.environ["COURSE_RECORD_DIR"]
    cases_dir = os.environ.get("COURSE_CASES_DIR", "")
    with open(os.path.join(cases_dir, cases_name(assignment, name, hidden)), "rb") as fh:
        cases = decode_cases(fh.read())
    data = run_cases(fn, cases)
    # written in place: the grader created this file, and in the sandbox it is the only
    # writable one in a read-only folder
    path = os.path.join(record_dir, record_name(assignment, name, hidden))
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_TRUNC), "wb") as fh:
        fh.write(data)
    # Not a verdict: the grader replaces this cell's outputs. If it never does (the
    # grading configuration was not loaded), this stderr line scores the cell 0.
    print(f"{name}: outputs recorded; the grader decides.", file=sys.stderr)


def check(assignment: str, name: str, fn, hidden: bool = False) -> None:
    """Test ``fn`` (the student's implementation of exercise ``name``).

    Student mode: prints one line when every case passes, otherwise raises
    AssertionError saying what is wrong (the common mistake it looks like, or the
    first wrong output with its shape and error size) and which section to read.
    Grading mode: see the module docstring.
    """
    if os.environ.get("COURSE_RECORD_DIR"):
        _grading_mode(assignment, name, fn, hidden)
        return
    if os.environ.get("NBGRADER_EXECUTION") == "autograde":
        # autograde without the grader's verdict step: never decide in the kernel
        raise AssertionError(
            "this notebook is being autograded without the course's grading "
            "configuration (nbgrader_config.py at the course root): no verdict")
    from grader import judge  # student mode only: the grader package is not in the sandbox

    verdict = judge.self_check(assignment, name, fn, hidden=hidden)
    if not verdict.passed:
        raise AssertionError(verdict.message)
    print(verdict.message)
