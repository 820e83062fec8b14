"""The test-cell harness: runs a student's function on an exercise's cases.

Every locked test cell of an assignment does::

    from course_lib.checks import check as _course_check   # private name: a student's
    _course_check("03_bptt", "rnn_bptt", rnn_bptt)         # own `check` cannot clash

Two modes, chosen by the environment:

* Student mode (``COURSE_RECORD_DIR`` unset): the function runs on the exercise's
  visible cases and is judged right here by ``course_lib.judging`` against the
  expected outputs stored in ``course_lib/data/checks/<assignment>.npz`` (written by
  ``tools/author_assignments.py`` from the grader's registry): the cell prints a pass
  line or raises ``AssertionError`` naming what is wrong and where to read. The student
  library needs nothing from the ``grader`` package.
* Grading mode (``COURSE_RECORD_DIR`` set by the grader): the case inputs are read
  from ``COURSE_CASES_DIR``, the function runs on them and what it returned is saved
  as a record. Nothing is decided in the kernel: the grader judges the record in its
  own process. Only a locked test cell records: before running the notebook the
  grader puts one line, ``enter_test_cell(<token>)``, at the top of every test cell,
  with a fresh random token per cell; a record is written only by a check call in the
  cell that carries the token, once (first write wins), under that token's name. A
  ``check(...)`` in a scratch cell records nothing.

Calls are positional, in the order of the exercise's parameters, so a correct
``softmax(logits)`` works whatever its parameter is called. Each call gets a fresh
copy of the inputs and the harness compares them afterwards with the originals: an
input the function changed is named in the record (the judge then fails it).

This module is also the wire format between the grader and the kernel (``encode`` /
``decode``: ``.npz`` files of float/int arrays plus one JSON string, never pickles),
so it imports nothing but NumPy and the standard library.
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

__all__ = ["check", "encode", "decode", "run_cases", "record_name", "cases_name",
           "enter_test_cell"]

FORMAT_VERSION = 2
RECORD_MAX_BYTES = 64 * 1024 * 1024
MAX_NOTES = 4


def record_name(token: str, hidden: bool) -> str:
    """File name of the record one test cell writes (the grader looks for exactly this)."""
    return f"{token}__{'hidden' if hidden else 'visible'}.npz"


def cases_name(assignment: str, name: str, hidden: bool) -> str:
    """File name of the case inputs the grader writes for one exercise."""
    return f"{assignment}__{name}__{'hidden' if hidden else 'visible'}.cases.npz"


# ---------------------------------------------------------------------------- encoding
def _encode_value(value, arrays: dict):
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
                "items": [_encode_value(v, arrays) for v in value.values()]}
    if isinstance(value, (tuple, list)):
        return {"k": type(value).__name__, "items": [_encode_value(v, arrays) for v in value]}
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


def encode_values(values: list) -> tuple[list, dict]:
    """(descriptions, arrays) of a list of case-like values (dicts, arrays, numbers)."""
    arrays: dict = {}
    return [_encode_value(v, arrays) for v in values], arrays


def decode_values(described: list, arrays: dict) -> list:
    return [_decode_value(d, arrays) for d in described]


def encode_cases(cases: list[dict]) -> bytes:
    described, arrays = encode_values([dict(case) for case in cases])
    return encode({"version": FORMAT_VERSION, "cases": described}, arrays)


def decode_cases(data: bytes) -> list[dict]:
    meta, arrays = decode(data)
    return decode_values(meta["cases"], arrays)


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
        arr = np.array(value, dtype=np.float64)  # the caller silences warnings
    except Exception:  # noqa: BLE001 - any object that is not numeric
        return {"t": "bad", "type": type(value).__name__}
    key = f"o{len(arrays)}"
    arrays[key] = arr
    return {"t": "leaf", "key": key}


def _describe_exception(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 2000 else text[:2000] + " ..."


def _changed(before, after, label: str) -> list[str]:
    """Labels of the arrays inside ``before`` whose values ``after`` no longer has."""
    if isinstance(before, np.ndarray):
        same = (isinstance(after, np.ndarray) and after.shape == before.shape
                and np.array_equal(before, after, equal_nan=before.dtype.kind == "f"))
        return [] if same else [label]
    if isinstance(before, dict) and isinstance(after, dict):
        out = [] if set(before) == set(after) else [label]
        for k in before:
            if k in after:
                out += _changed(before[k], after[k], f"{label}[{k!r}]")
        return out
    if isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            return [label]
        return [c for i, (b, a) in enumerate(zip(before, after))
                for c in _changed(b, a, f"{label}[{i}]")]
    return []


def run_cases(fn, cases: list[dict], notes=()) -> bytes:
    """Call ``fn`` on each case (positionally, a fresh copy of the inputs each time) and
    return the record: what it returned or the exception it raised, and which inputs
    it modified, per case. ``notes`` (short strings) travel with the record."""
    return encode(*run_cases_unencoded(fn, cases, notes))


def run_cases_unencoded(fn, cases: list[dict], notes=()) -> tuple[dict, dict]:
    """``run_cases`` before encoding: (meta, arrays), for trusted callers in-process."""
    arrays: dict = {}
    results = []
    for case in cases:
        args = copy.deepcopy(list(case.values()))
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                # a RuntimeWarning on stderr would make nbgrader fail a passing cell
                warnings.simplefilter("ignore")
                value = fn(*args)
        except Exception as exc:  # noqa: BLE001 - the judge reports it
            results.append({"status": "raised", "error": _describe_exception(exc),
                            "not_implemented": isinstance(exc, NotImplementedError)})
            continue
        mutated = [c for name, arg in zip(case, args) for c in _changed(case[name], arg, name)]
        with warnings.catch_warnings():  # once per output, not once per array in it
            warnings.simplefilter("ignore")
            out = _output_struct(value, arrays)
        results.append({"status": "ok", "out": out, "mutated": mutated[:20]})
    return ({"version": FORMAT_VERSION, "results": results,
             "notes": [str(n)[:500] for n in notes][:MAX_NOTES]}, arrays)


# ---------------------------------------------------------------------------- test cells
_cell = {"token": None, "count": None}


def _execution_count():
    """The running IPython cell's number, or None outside IPython."""
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython",
                                                  lambda: None)()
    return getattr(shell, "execution_count", None) if shell is not None else None


def enter_test_cell(token: str) -> None:
    """Called by the line the grader puts at the top of each locked test cell."""
    _cell["token"], _cell["count"] = str(token), _execution_count()


def _current_token():
    if _cell["token"] is None or _cell["count"] != _execution_count():
        return None  # not inside the test cell that carries a token
    return _cell["token"]


def _clash_notes(caller_globals: dict) -> list[str]:
    """A student's own ``check`` shadows the harness in their notebook: say so."""
    theirs = caller_globals.get("check")
    if theirs is None or theirs is check:
        return []
    return ["Note: your notebook defines its own `check` "
            f"({type(theirs).__name__}), which hides the course's `check` from "
            "course_lib.checks. The test cells call the course's harness under a private "
            "name, so this did not change your result; rename yours (e.g. `my_check`) to "
            "avoid confusion."]


def _write_once(path: str, data: bytes) -> bool:
    """Fill the empty record file the grader created at ``path``, unless it was filled
    already. Written in place, never created: in the sandbox the record folder is
    read-only and these files are the only writable ones; a link is never followed."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "wb") as fh:
        if os.fstat(fd).st_size:
            return False
        fh.write(data)
    return True


def _grading_mode(assignment: str, name: str, fn, hidden: bool, notes) -> None:
    token = _current_token()
    if token is None:
        print(f"(check of {name} outside its test cell: not recorded while grading)")
        return
    cases_dir = os.environ.get("COURSE_CASES_DIR", "")
    with open(os.path.join(cases_dir, cases_name(assignment, name, hidden)), "rb") as fh:
        cases = decode_cases(fh.read())
    data = run_cases(fn, cases, notes)
    _write_once(os.path.join(os.environ["COURSE_RECORD_DIR"], record_name(token, hidden)), data)
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
    notes = _clash_notes(sys._getframe(1).f_globals)
    if os.environ.get("COURSE_RECORD_DIR"):
        _grading_mode(assignment, name, fn, hidden, notes)
        return
    if os.environ.get("NBGRADER_EXECUTION") == "autograde":
        # autograde without the grader's verdict step: never decide in the kernel
        raise AssertionError(
            "this notebook is being autograded without the course's grading "
            "configuration (nbgrader_config.py at the course root): no verdict")
    if hidden:
        raise AssertionError("hidden cases are drawn and judged by the grader only")
    from . import judging

    verdict = judging.self_check(assignment, name, fn, notes)
    if not verdict.passed:
        raise AssertionError(verdict.message)
    print(verdict.message)
