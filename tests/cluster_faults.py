"""Faults the cluster tests inject into Dask grading workers (tests/test_grading_cluster.py).

``Faults`` is a Dask WorkerPlugin: the scheduler gives it to every worker, also to the
ones that replace a dead worker, and it wraps ``grader.worker.grader_for`` (which
``grader.worker.grade`` calls first) so that a job of a student it names meets that
student's fault, ``{student: (action, options)}``:

* ``die``: the worker process kills itself (SIGKILL), every time: a poison submission;
* ``fail``: the grader raises, every time;
* ``fail-first``: the grader raises on the first try of each job in a process;
* ``mismatch``: the worker's own fingerprint of the course differs from the
  coordinator's (the real check raises CourseMismatch);
* ``meet``: where the job creates the student in a gradebook (nbgrader's
  ``Gradebook.add_student``, the moment two writers of one gradebook race: each finds
  no student, each inserts one) it waits (at most 60 s) until ``expect`` jobs of the
  student have got there, so they all create it at the same moment; each job leaves a
  file in ``folder`` saying whether it met the others.

This module must be importable by the workers (the tests put tests/ on PYTHONPATH).
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin


class Faults(WorkerPlugin):
    def __init__(self, faults: dict):
        self.faults = faults

    def setup(self, worker):
        from nbgrader.api import Gradebook

        from grader import worker as grading

        original = _unwrapped(grading.grader_for)
        add_student = _unwrapped(Gradebook.add_student)
        tried: set[str] = set()
        current: dict = {}  # the job this worker grades (one at a time)

        def grader_for(job):
            current["job"] = job
            if job.student in self.faults:
                action, options = self.faults[job.student]
                _strike(action, job, tried, **options)
            return original(job)

        def add_student_when_met(gb, student_id, **kwargs):
            job = current.get("job")
            action, options = self.faults.get(getattr(job, "student", None), ("", {}))
            if action == "meet" and student_id == job.student:
                _meet(job, **options)
            return add_student(gb, student_id, **kwargs)

        grader_for.__wrapped__ = original
        add_student_when_met.__wrapped__ = add_student
        grading.grader_for = grader_for
        Gradebook.add_student = add_student_when_met

    def teardown(self, worker):
        from nbgrader.api import Gradebook

        from grader import worker as grading

        grading.grader_for = _unwrapped(grading.grader_for)
        Gradebook.add_student = _unwrapped(Gradebook.add_student)


def _unwrapped(function):
    return getattr(function, "__wrapped__", function)


def _strike(action: str, job, tried: set, **_options) -> None:
    if action == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "fail" or action == "fail-first" and job.key not in tried:
        tried.add(job.key)
        raise RuntimeError(f"fault injected by the test into the grader ({job.key})")
    if action == "mismatch":
        job.settings["COURSE_SANDBOX"] = "other"  # this worker's course is not the same


def _meet(job, folder: str, expect: int) -> None:
    arrived = Path(folder)
    (arrived / f"{job.assignment}.arrived").touch()
    deadline = time.monotonic() + 60
    while len(list(arrived.glob("*.arrived"))) < expect and time.monotonic() < deadline:
        time.sleep(0.01)
    met = len(list(arrived.glob("*.arrived"))) >= expect
    (arrived / f"{job.assignment}.{'met' if met else 'alone'}").touch()
