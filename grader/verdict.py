"""Grader-side steps around nbgrader's ``Execute``: the kernel never decides a grade.

``c.Autograde.autograde_preprocessors`` (nbgrader_config.py) runs::

    PrepareCases -> Execute (sandboxed kernel) -> Verdict -> ... -> SaveAutoGrades

* ``PrepareCases`` draws each exercise's visible and hidden cases (hidden ones from a
  seed derived from student, assignment and the course salt: re-runs are identical),
  writes their *inputs* to a fresh cases directory in this run's private folder,
  creates one empty record file per test cell (the sandbox lends only these files
  to the kernel, in a read-only folder) and points the kernel at both (``COURSE_CASES_DIR``,
  ``COURSE_RECORD_DIR``). The cases it keeps in memory are the ones judged, so
  editing the case files from the kernel changes nothing.
  It also puts one line at the top of every locked test cell,
  ``enter_test_cell(<token>)`` with a fresh random token per cell: only a check call in
  the cell that carries the token records (once, first write wins), so a ``check(...)``
  in a scratch cell cannot replace a test cell's record.
* In the kernel, ``course_lib.checks.check`` runs the student's function on the
  cases and writes its outputs as a record named after the cell's token.
* ``Verdict`` reads each record defensively (no symlinks, regular files only, size
  cap, no pickles), recomputes the references in this process, judges with
  ``grader.judge`` and replaces every autograded test cell's outputs: a clean pass
  line, or an error naming the mistake. No record, a garbled record or an unknown
  test cell -> an error (0 points): the step fails closed. It also writes the
  verdicts as JSON (``verdict_directory``) for the class report.

Both steps are thin wrappers of ``grader.cells`` (``prepare`` / ``decide``), which
``python -m grader check`` runs too: the self-check is the grader's own path.
"""
from __future__ import annotations

import json
import os

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer, Unicode, default

from course_lib import checks

from . import cells, judge, registry
from .atomic_files import replace_text

_KEY = "course_grading"
grading_salt = judge.grading_salt
read_record = cells.read_record
test_cells = cells.test_cells


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
        prepared = cells.prepare(nb, assignment, registry.for_assignment(assignment),
                                 judge.hidden_seed(student, assignment, self.salt), student)
        os.environ.update(prepared["env"])
        resources[_KEY] = prepared
        return nb, resources


class Verdict(NbGraderPreprocessor):
    """After Execute, before SaveAutoGrades: decide every test cell (see module doc)."""

    max_record_bytes = Integer(checks.RECORD_MAX_BYTES).tag(config=True)
    verdict_directory = Unicode(
        "", help="write {student}/{assignment}.json verdicts here ('' = don't)").tag(config=True)

    def preprocess(self, nb, resources):
        info = resources.get(_KEY)
        try:
            verdicts = cells.decide(nb, info, registry.for_assignment(
                resources["nbgrader"]["assignment"]), self.max_record_bytes, self.log)
        finally:
            for var in ("COURSE_CASES_DIR", "COURSE_RECORD_DIR", "COURSE_ASSIGNMENT"):
                os.environ.pop(var, None)
            cells.cleanup(info)
        resources.setdefault(_KEY + "_verdicts", verdicts)
        if self.verdict_directory:
            self._write(resources, verdicts)
        return nb, resources

    def _write(self, resources, verdicts):
        meta = resources["nbgrader"]
        replace_text(os.path.join(self.verdict_directory, meta["student"],
                                  f"{meta['assignment']}.json"),
                     json.dumps({"student": meta["student"], "assignment": meta["assignment"],
                                 "notebook": meta["notebook"], "tests": verdicts}, indent=1))
