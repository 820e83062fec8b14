"""Faults the cluster tests inject into Dask grading workers (tests/test_grading_cluster.py).

``Faults`` is a Dask WorkerPlugin: the scheduler gives it to every worker, also to the
ones that replace a dead worker, and it wraps ``grader.worker.grader_for`` (which
``grader.worker.grade`` calls first) so that a job of a student it names meets that
student's fault, ``{student: (action, options)}`` (or ``{"student/assignment": ...}``
for one of the student's jobs):

* ``die``: the worker process kills itself (SIGKILL), every time: a poison submission;
* ``fail``: the grader raises, every time;
* ``fail-first``: the grader raises on the first try of each job in a process;
* ``no-kernel-first``: the sandbox kernel fails to start on the first try of each
  job in a process;
* ``mismatch``: the worker's own fingerprint of the course differs from the
  coordinator's (the real check raises CourseMismatch);
* ``meet``: where the job creates the student in a gradebook (nbgrader's
  ``Gradebook.add_student``, the moment two writers of one gradebook race: each finds
  no student, each inserts one) it waits (at most 60 s) until ``expect`` jobs of the
  student have got there, so they all create it at the same moment; each job leaves a
  file in ``folder`` saying whether it met the others;
* ``hold``: once the notebook's kernel has started, the worker waits (at most 60 s)
  until a file ``release`` appears in ``folder``: the kernel is sure to be running
  when the test looks for it.

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
        from grader.sandbox.execute import SandboxedExecute

        original = _unwrapped(grading.grader_for)
        add_student = _unwrapped(Gradebook.add_student)
        start_kernel = _unwrapped(SandboxedExecute._start_kernel)
        tried: set[str] = set()
        current: dict = {}  # the job this worker grades (one at a time)

        def fault():
            job = current.get("job")
            return job, self.faults.get(getattr(job, "key", None)) or self.faults.get(
                getattr(job, "student", None), ("", {}))

        def grader_for(job):
            current["job"] = job
            _, (action, options) = fault()
            _strike(action, job, tried, **options)
            return original(job)

        def add_student_when_met(gb, student_id, **kwargs):
            job, (action, options) = fault()
            if action == "meet" and student_id == job.student:
                _meet(job, **options)
            return add_student(gb, student_id, **kwargs)

        def start_kernel_then_hold(client):
            job, (action, options) = fault()
            if action == "no-kernel-first" and job.key not in tried:
                tried.add(job.key)
                raise RuntimeError(f"kernel start fault injected by the test ({job.key})")
            start_kernel(client)
            if action == "hold":
                _hold(**options)

        grader_for.__wrapped__ = original
        add_student_when_met.__wrapped__ = add_student
        start_kernel_then_hold.__wrapped__ = start_kernel
        grading.grader_for = grader_for
        Gradebook.add_student = add_student_when_met
        SandboxedExecute._start_kernel = start_kernel_then_hold

    def teardown(self, worker):
        from nbgrader.api import Gradebook

        from grader import worker as grading
        from grader.sandbox.execute import SandboxedExecute

        grading.grader_for = _unwrapped(grading.grader_for)
        Gradebook.add_student = _unwrapped(Gradebook.add_student)
        SandboxedExecute._start_kernel = _unwrapped(SandboxedExecute._start_kernel)


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
    met = _wait_until(lambda: len(list(arrived.glob("*.arrived"))) >= expect)
    (arrived / f"{job.assignment}.{'met' if met else 'alone'}").touch()


def _hold(folder: str) -> None:
    _wait_until((Path(folder) / "release").exists)


def _wait_until(condition, seconds: float = 60) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` have passed; whether it held."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
