"""Grader-side steps around nbgrader's ``Execute``: the kernel never decides a grade.

``c.Autograde.autograde_preprocessors`` (nbgrader_config.py) runs::

    PrepareCases -> Execute (sandboxed kernel) -> Verdict -> ... -> SaveAutoGrades

* ``PrepareCases`` draws each exercise's visible and hidden cases (hidden ones from a
  seed derived from student, assignment and the course salt: re-runs are identical),
  writes their *inputs* to a fresh cases directory, creates an empty record
  directory and points the kernel at both (``COURSE_CASES_DIR``,
  ``COURSE_RECORD_DIR``). The cases it keeps in memory are the ones judged, so
  editing the case files from the kernel changes nothing.
* In the kernel, ``course_lib.checks.check`` runs the student's function on the
  cases and writes its outputs as a record.
* ``Verdict`` reads each record defensively (no symlinks, regular files only, size
  cap, no pickles), recomputes the references in this process, judges with
  ``grader.judge`` and replaces every autograded test cell's outputs: a clean pass
  line, or an error naming the mistake. No record, a garbled record or an unknown
  test cell -> an error (0 points): the step fails closed. It also writes the
  verdicts as JSON (``verdict_directory``) for the class report.
"""
from __future__ import annotations

import json
import os
import re
import stat

from nbformat.v4 import new_output
from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer, Unicode, default

from course_lib import checks

from . import judge, registry
from .sandbox.rundir import fresh_dir, remove_tree

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_KEY = "course_grading"
grading_salt = judge.grading_salt


def test_cells(nb):
    """(cell, grade_id) of every autograded test cell (grade, not solution, code)."""
    for cell in nb.cells:
        if cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell):
            yield cell, cell.metadata["nbgrader"].get("grade_id", "")


class PrepareCases(NbGraderPreprocessor):
    """Before Execute: write the case inputs and set the kernel's environment."""

    course_root = Unicode("", help="course root whose grader/secret holds the salt").tag(
        config=True)
    salt = Unicode(help="salt of the hidden-case seeds (default: the course's secret "
                   "salt file, see judge.grading_salt)").tag(config=True)

    @default("salt")
    def _salt_default(self):
        return grading_salt(self.course_root or None)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        assignment, student = info["assignment"], info["student"]
        # in this run's private folder; both stay readable for a kernel of another uid
        work = fresh_dir(f"{_SAFE.sub('_', student)[:40]}-{assignment}-")
        os.chmod(work, 0o711)
        cases_dir = os.path.join(work, "cases")
        record_dir = os.path.join(work, "records")
        os.mkdir(cases_dir, 0o755)
        os.mkdir(record_dir, 0o755)
        seed = judge.hidden_seed(student, assignment, self.salt)
        cases = {}
        for name, exercise in sorted(registry.for_assignment(assignment).items()):
            for hidden in (False, True):
                drawn = judge.cases_for(exercise, hidden, seed=seed)
                cases[(name, hidden)] = drawn
                path = os.path.join(cases_dir, checks.cases_name(assignment, name, hidden))
                with open(path, "wb") as fh:
                    fh.write(checks.encode_cases(drawn))
                os.chmod(path, 0o644)
                # the kernel may only fill these files: its record folder is read-only
                record = os.path.join(record_dir, checks.record_name(assignment, name, hidden))
                os.close(os.open(record, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.environ["COURSE_CASES_DIR"] = cases_dir
        os.environ["COURSE_RECORD_DIR"] = record_dir
        os.environ["COURSE_ASSIGNMENT"] = assignment
        resources[_KEY] = {"work": work, "cases": cases, "record_dir": record_dir,
                           "assignment": assignment, "student": student}
        return nb, resources


def read_record(record_dir: str, filename: str, max_bytes: int) -> bytes | None:
    """The record's bytes, or None if it is missing, empty or not a plain regular file."""
    try:
        dfd = os.open(record_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fd = os.open(filename, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not 0 < st.st_size <= max_bytes:
            return None
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _pass_output(text: str):
    return new_output("stream", name="stdout", text=text + "\n")


def _error_output(text: str, ename: str = "AssertionError"):
    return new_output("error", ename=ename, evalue=text, traceback=[f"{ename}: {text}"])


def _kernel_error(cell) -> str | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename', '')}: {str(out.get('evalue', ''))[:300]}"
    return None


class Verdict(NbGraderPreprocessor):
    """After Execute, before SaveAutoGrades: decide every test cell (see module doc)."""

    max_record_bytes = Integer(checks.RECORD_MAX_BYTES).tag(config=True)
    verdict_directory = Unicode(
        "", help="write {student}/{assignment}.json verdicts here ('' = don't)").tag(config=True)

    def preprocess(self, nb, resources):
        info = resources.get(_KEY)
        verdicts = []
        try:
            exercises = registry.for_assignment(resources["nbgrader"]["assignment"])
            for cell, grade_id in test_cells(nb):
                v = self._decide(cell, grade_id, info, exercises)
                points = float(cell.metadata["nbgrader"].get("points", 0) or 0)
                cell.outputs = [_pass_output(v.message) if v.passed else _error_output(v.message)]
                verdicts.append({"grade_id": grade_id, "name": v.name or grade_id,
                                 "passed": v.passed, "points": points,
                                 "score": points if v.passed else 0.0, "kind": v.kind,
                                 "mistake": v.mistake, "message": v.message})
        finally:
            self._cleanup(info)
        resources.setdefault(_KEY + "_verdicts", verdicts)
        if self.verdict_directory:
            self._write(resources, verdicts)
        return nb, resources

    def _decide(self, cell, grade_id, info, exercises) -> judge.Verdict:
        name = grade_id[len("test_"):] if grade_id.startswith("test_") else ""
        exercise = exercises.get(name)
        if info is None:
            return judge.Verdict(False, f"{grade_id}: the grader's case step did not run "
                                 "(grading configuration not loaded): 0 points.", name,
                                 kind="no_record")
        if exercise is None:
            return judge.Verdict(False, f"{grade_id}: not a test cell of a registered exercise "
                                 "of this assignment: 0 points.", name, kind="bad_record")
        crashed = _kernel_error(cell)
        verdict = None
        counts = []
        for hidden in (False, True):
            if hidden and "hidden=True" not in cell.source:
                continue
            data = read_record(info["record_dir"], checks.record_name(
                info["assignment"], name, hidden), self.max_record_bytes)
            try:
                verdict = judge.judge_record(exercise, info["cases"][(name, hidden)], data,
                                             hidden=hidden)
            except Exception as exc:  # noqa: BLE001 - a broken reference: fail closed, loudly
                self.log.error("judging %s failed: %s", grade_id, exc)
                verdict = judge.Verdict(False, f"{name}: the grader could not judge this test "
                                        f"({type(exc).__name__}); ask your instructor.", name,
                                        kind="bad_record")
            if not verdict.passed:
                if verdict.kind == "no_record" and crashed:
                    verdict.message += f" The cell stopped with {crashed}"
                return verdict
            counts.append(f"{len(info['cases'][(name, hidden)])} {'hidden' if hidden else 'visible'}")
        verdict.message = f"{name}: passed ({' + '.join(counts)} cases)"
        return verdict

    def _cleanup(self, info):
        for var in ("COURSE_CASES_DIR", "COURSE_RECORD_DIR", "COURSE_ASSIGNMENT"):
            os.environ.pop(var, None)
        if info and info.get("work"):
            remove_tree(info["work"])

    def _write(self, resources, verdicts):
        meta = resources["nbgrader"]
        folder = os.path.join(self.verdict_directory, meta["student"])
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{meta['assignment']}.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"student": meta["student"], "assignment": meta["assignment"],
                       "notebook": meta["notebook"], "tests": verdicts}, fh, indent=1)
        os.replace(tmp, path)
