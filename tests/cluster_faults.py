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
* ``meet``: the job waits (at most 60 s) until ``expect`` jobs of the student have
  started, so the student's assignments are graded at the same moment; each job
  leaves a file in ``folder`` saying whether it met the others.

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
        from grader import worker as grading

        original = getattr(grading.grader_for, "__wrapped__", grading.grader_for)
        tried: set[str] = set()

        def grader_for(job):
            if job.student in self.faults:
                action, options = self.faults[job.student]
                _strike(action, job, tried, **options)
            return original(job)

        grader_for.__wrapped__ = original
        grading.grader_for = grader_for

    def teardown(self, worker):
        from grader import worker as grading

        grading.grader_for = getattr(grading.grader_for, "__wrapped__", grading.grader_for)


def _strike(action: str, job, tried: set, folder: str = "", expect: int = 2) -> None:
    if action == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "fail" or action == "fail-first" and job.key not in tried:
        tried.add(job.key)
        raise RuntimeError(f"fault injected by the test into the grader ({job.key})")
    if action == "mismatch":
        job.settings["COURSE_SANDBOX"] = "other"  # this worker's course is not the same
    if action == "meet":
        started = Path(folder)
        (started / f"{job.assignment}.started").touch()
        deadline = time.monotonic() + 60
        while len(list(started.glob("*.started"))) < expect and time.monotonic() < deadline:
            time.sleep(0.05)
        met = len(list(started.glob("*.started"))) >= expect
        (started / f"{job.assignment}.{'met' if met else 'alone'}").touch()
