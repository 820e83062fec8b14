"""The test cells of a notebook, before and after it runs: one path for grading and
for the self-check (``python -m grader check``).

* ``prepare``: draw each exercise's cases (visible, and the student's hidden ones),
  write their inputs to a fresh cases directory, make an empty record directory, and
  put ``enter_test_cell(<token>)`` at the top of every test cell (a fresh random token
  per cell: only that cell may record, see ``course_lib.checks``).
* ``decide``: after the notebook ran, read each test cell's records (no symlinks,
  regular files only, size cap, no pickles), judge them with ``grader.judge`` and
  replace the cell's outputs by a clean pass line or an error naming the mistake;
  the token lines are taken out again. No record, a garbled record or an unknown test
  cell -> an error (0 points): it fails closed. When a test cell stopped because the
  function is not defined, the verdict names the error of the answer cell (a
  SyntaxError with its line) instead.

Plain nbformat only (no nbgrader), so the student's self-check needs no grading stack.
"""
from __future__ import annotations

import os
import re
import secrets

from nbformat.v4 import new_output

from course_lib import checks

from . import judge, plain_files
from .sandbox.rundir import fresh_dir, remove_tree

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_WHERE = re.compile(r"\((?:[^()]*\.py|<[^>]*>), line (\d+)\)")


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def test_cells(nb):
    """(cell, grade_id) of every autograded test cell (grade, not solution, code)."""
    for cell in nb.cells:
        meta = _nbgrader(cell)
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            yield cell, meta.get("grade_id", "")


def token_line(token: str) -> str:
    """The first line of a test cell while it runs: only this cell may record."""
    return f'__import__("course_lib.checks").checks.enter_test_cell("{token}")\n'


def prepare(nb, assignment: str, exercises: dict, seed: int,
            student: str = "student") -> dict:
    """Write the cases, tag the test cells and create their empty record files in a
    fresh folder of this run's private folder; returns the info ``decide`` needs (its
    "env" must be in the kernel's environment).

    The kernel may only fill record files made here: in the sandbox the record folder
    is read-only, so it cannot plant links or other files beside them."""
    work = fresh_dir(f"{_SAFE.sub('_', student)[:40]}-{assignment}-")
    os.chmod(work, 0o711)  # readable by a kernel of another uid, not listable
    cases_dir, record_dir = os.path.join(work, "cases"), os.path.join(work, "records")
    os.mkdir(cases_dir, 0o755)
    os.mkdir(record_dir, 0o755)
    cases = {}
    for name, exercise in sorted(exercises.items()):
        for hidden in (False, True):
            drawn = judge.cases_for(exercise, hidden, seed=seed)
            cases[(name, hidden)] = drawn
            path = os.path.join(cases_dir, checks.cases_name(assignment, name, hidden))
            with open(path, "wb") as fh:
                fh.write(checks.encode_cases(drawn))
            os.chmod(path, 0o644)
    tokens = {}
    for cell, grade_id in test_cells(nb):
        tokens[grade_id] = secrets.token_hex(12)
        cell.source = token_line(tokens[grade_id]) + cell.source
        for hidden in (False, True):
            record = os.path.join(record_dir, checks.record_name(tokens[grade_id], hidden))
            # the sandbox lends each one to the kernel's uid while it runs
            os.close(os.open(record, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    return {"work": work, "cases": cases, "record_dir": record_dir, "tokens": tokens,
            "assignment": assignment, "student": student,
            "env": {"COURSE_CASES_DIR": cases_dir, "COURSE_RECORD_DIR": record_dir,
                    "COURSE_ASSIGNMENT": assignment}}


def cleanup(info) -> None:
    if info and info.get("work"):
        remove_tree(info["work"])


def read_record(record_dir: str, filename: str, max_bytes: int) -> bytes | None:
    """The record's bytes, or None if it is missing, empty or not a plain regular file
    of at most ``max_bytes`` (the kernel could have planted anything in its place)."""
    try:
        dfd = os.open(record_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        return plain_files.read(dfd, filename, max_bytes) or None
    except plain_files.NotPlainFile:
        return None
    finally:
        os.close(dfd)


def cell_error(cell) -> str | None:
    """"SyntaxError: invalid syntax (line 12)" for a cell whose run ended in an error."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            text = f"{out.get('ename', '')}: {str(out.get('evalue', ''))[:300]}"
            text = _WHERE.sub(r"(line \1)", text)  # "(3721.py, line 21)": the file is noise
            lines = re.findall(r"line (\d+)", _ANSI.sub("", "\n".join(out.get("traceback", []))))
            return f"{text} (line {lines[-1]})" if lines and "line " not in text else text
    return None


def _pass_output(text: str):
    return new_output("stream", name="stdout", text=text + "\n")


def _error_output(text: str, ename: str = "AssertionError"):
    return new_output("error", ename=ename, evalue=text, traceback=[f"{ename}: {text}"])


def decide(nb, info, exercises: dict, max_bytes: int = checks.RECORD_MAX_BYTES,
           log=None, hidden: bool = True) -> list[dict]:
    """Judge every test cell of the executed ``nb`` and rewrite its outputs; returns
    one verdict dict per test cell. ``hidden=False`` judges the visible cases only."""
    answer_errors = {_nbgrader(c).get("grade_id"): cell_error(c) for c in nb.cells
                     if c.cell_type == "code" and _nbgrader(c).get("solution")}
    verdicts = []
    for cell, grade_id in test_cells(nb):
        token = (info or {}).get("tokens", {}).get(grade_id)
        if token and cell.source.startswith(token_line(token)):
            cell.source = cell.source[len(token_line(token)):]
        v = _decide_cell(cell, grade_id, info, exercises, max_bytes, log, hidden,
                         answer_errors)
        points = float(_nbgrader(cell).get("points", 0) or 0)
        cell.outputs = [_pass_output(v.message) if v.passed else _error_output(v.message)]
        verdicts.append({"grade_id": grade_id, "name": v.name or grade_id,
                         "passed": v.passed, "points": points,
                         "score": points if v.passed else 0.0, "kind": v.kind,
                         "mistake": v.mistake, "confidence": v.confidence,
                         "message": v.message})
    return verdicts


def _decide_cell(cell, grade_id, info, exercises, max_bytes, log, judge_hidden,
                 answer_errors) -> judge.Verdict:
    name = grade_id[len("test_"):] if grade_id.startswith("test_") else ""
    exercise = exercises.get(name)
    if info is None:
        return judge.Verdict(False, f"{grade_id}: the grader's case step did not run "
                             "(grading configuration not loaded): 0 points.", name,
                             kind="no_record")
    if exercise is None:
        return judge.Verdict(False, f"{grade_id}: not a test cell of a registered exercise "
                             "of this assignment: 0 points.", name, kind="bad_record")
    crashed = cell_error(cell)
    verdict, counts = None, []
    for hidden in (False, True):
        if hidden and (not judge_hidden or "hidden=True" not in cell.source):
            continue
        token = info.get("tokens", {}).get(grade_id)
        data = read_record(info["record_dir"], checks.record_name(token, hidden),
                           max_bytes) if token else None
        try:
            verdict = judge.judge_record(exercise, info["cases"][(name, hidden)], data,
                                         hidden=hidden)
        except Exception as exc:  # noqa: BLE001 - a broken reference: fail closed, loudly
            if log:
                log.error("judging %s failed: %s", grade_id, exc)
            verdict = judge.Verdict(False, f"{name}: the grader could not judge this test "
                                    f"({type(exc).__name__}); ask your instructor.", name,
                                    kind="bad_record")
        if not verdict.passed:
            if verdict.kind == "no_record" and crashed:
                own = answer_errors.get(name)
                if own and f"name '{name}' is not defined" in crashed:
                    verdict.message = (f"{name}: its answer cell failed with {own}, so "
                                       f"{name} was never defined: 0 points.")
                    verdict.kind = "raised"
                else:
                    verdict.message += f" The cell stopped with {crashed}"
            return verdict
        counts.append(f"{len(info['cases'][(name, hidden)])} {'hidden' if hidden else 'visible'}")
    verdict.message = (f"{name}: passed ({' + '.join(counts)} cases)."
                       + "".join(f" {n}" for n in verdict.details.get("notes", ())))
    return verdict
