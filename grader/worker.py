"""One grading task: a pure function of its inputs, run by any worker that has the course.

    grade(job, template) -> result

``job`` (``Job``) holds everything about one submission that the coordinator
(grader.pipeline) knows: the notebook's bytes and timestamp text as ``grader.staging``
read them, the student's manual marks for that assignment from the course gradebook,
and the coordinator's grading fingerprint. ``template`` (``Template``) is a gradebook
that holds the assignments and no student, built once per run by the coordinator.

The worker first recomputes the fingerprint from its own checkout of the course: one
that differs (other grader code, registry, salt or settings) raises ``CourseMismatch``,
the grader's failure, never the student's grade. Then it grades in a private folder of
its own: a fresh copy of the template gradebook, and private submitted/, autograded/,
feedback/ and verdicts/ folders (nbgrader's and the Verdict step's folders are pointed
there). The manual marks go into the private gradebook before nbgrader runs, so
``SaveAutoGrades`` treats them as on the course gradebook and the written-answer marks
show in the feedback. Nothing the worker writes is read by anyone else: the result
carries the grades and the three files, and the coordinator alone writes the course's
gradebook and folders (grader.record).

The worker keeps one nbgrader API object per process (its start-up cost is paid on the
first task), the same in a process-pool worker and in a Dask worker; the feedback
exporter's compiled templates (``grader.inert.CompiledTemplates``) and one database
engine per gradebook (``_share_engines``) are kept per process too. Each worker process
caps its own address space (``worker_memory``): a notebook that makes it grow costs that
notebook's worker, not the machine.
"""
from __future__ import annotations

import dataclasses
import html
import json
import os
import shutil
import time
from pathlib import Path

from . import inert, nbapi, scrub, staging
from .fingerprint import TIME_LIMITS, fingerprint
from .sandbox.rundir import fresh_dir, remove_tree

WORKER_MEMORY = 6 * 1024**3  # address space of a grading worker (nbgrader + one notebook)
# the coordinator's settings a grade depends on, sent with every job (the fingerprint
# covers each: the sandbox, the time limits, and the registry through its files)
SETTINGS = ("COURSE_SANDBOX", *TIME_LIMITS, "COURSE_EXERCISES_MODULE")


class CourseMismatch(RuntimeError):
    """This worker's course differs from the coordinator's: it must not grade."""


class KernelStartFailure(RuntimeError):
    """The sandbox kernel could not start (no student code had run): not a grade."""


@dataclasses.dataclass(frozen=True)
class Template:
    """A gradebook file with the assignments and no student: ``data`` is its bytes."""

    digest: str
    data: bytes


@dataclasses.dataclass(frozen=True)
class Job:
    """One submission to grade. ``submission`` is None when nothing could be read (then
    ``problem`` says why); ``marks`` holds the manual marks of the course gradebook:
    ``{"scores": {(notebook, cell): score}, "comments": {(notebook, cell): text}}``."""

    student: str
    assignment: str
    digest: str
    fingerprint: str
    root: str
    submission: staging.Submission | None
    problem: str = ""
    marks: dict = dataclasses.field(default_factory=dict)
    settings: dict = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.student}/{self.assignment}"


def settings() -> dict:
    """This process's values of ``SETTINGS`` (what a job carries to its worker)."""
    return {k: os.environ[k] for k in SETTINGS if k in os.environ}


def worker_memory() -> int:
    return int(os.environ.get("COURSE_WORKER_MEMORY") or WORKER_MEMORY)


# ---------------------------------------------------------------------------- pages
def failure_page(root, student: str, assignment: str, reason: str) -> bytes:
    """The feedback page of a submission that could not be graded."""
    reason = scrub.scrub_paths(reason, course_root=str(root))
    body = (f"<h1>{html.escape(assignment)}: not graded</h1>"
            f"<p>Student: {html.escape(student)}</p><p><strong>Your submission could not be "
            f"graded:</strong> {html.escape(reason)}. Score: 0.</p><p>Fix this and submit "
            f"again; check your notebook first with "
            f"<code>python -m grader check {html.escape(assignment)}.ipynb</code>.</p>")
    return inert.page(f"{assignment}: feedback", body).encode()


def notebook_problem(data: bytes, name: str) -> str:
    """Why ``data`` is not a notebook nbgrader can read ('' when it is)."""
    import nbformat

    try:
        raw = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return f"{name} is not a valid notebook file (not JSON: {exc})"
    if not isinstance(raw, dict) or "cells" not in raw and "worksheets" not in raw:
        return f"{name} is not a Jupyter notebook"
    major = raw.get("nbformat")
    if major != 4:
        return f"{name} has notebook format {major}; save it with Jupyter (format 4)"
    try:
        nbformat.validate(nbformat.reads(json.dumps(raw), as_version=4))
    except Exception as exc:  # noqa: BLE001 - any validation error
        return f"{name} is not a valid notebook ({str(exc).splitlines()[0][:200]})"
    return ""


def failure_reason(log: str) -> str:
    """nbgrader's log of a failed step, said in one line for the student."""
    lines = [ln for ln in log.splitlines() if "ERROR" in ln or "Error" in ln]
    for ln in lines:
        if "DeadKernel" in ln or "Kernel died" in ln:
            return "the notebook's kernel died while running (e.g. os._exit, a crash or too much memory)"
        if "CellTimeoutError" in ln or "Timeout" in ln:
            return "a cell ran longer than the time limit"
    return (lines[-1][-300:] if lines else "nbgrader could not grade this notebook")


# ---------------------------------------------------------------------------- process
class _Grader:
    """This process's private course folders, gradebook and nbgrader API object."""

    def __init__(self, root: Path):
        self.root = root
        self.home = Path(fresh_dir("worker-"))
        self.folders = {name: self.home / name
                        for name in ("submitted", "autograded", "feedback", "verdicts")}
        self.db = self.home / "gradebook.db"
        self.db_url = f"sqlite:///{self.db}"
        self.templates: dict[str, Path] = {}
        self.api = nbapi.make_api(root, {
            "CourseDirectory": {"submitted_directory": str(self.folders["submitted"]),
                                "autograded_directory": str(self.folders["autograded"]),
                                "feedback_directory": str(self.folders["feedback"]),
                                "db_url": self.db_url},
            "Verdict": {"verdict_directory": str(self.folders["verdicts"])}})

    def reset(self, template: Template) -> None:
        """Empty private folders and a fresh copy of the template gradebook."""
        for folder in self.folders.values():
            remove_tree(str(folder))
            folder.mkdir(mode=0o700)
        path = self.templates.get(template.digest)
        if path is None:
            path = self.home / f"template-{template.digest[:16]}.db"
            path.write_bytes(template.data)
            self.templates[template.digest] = path
        shutil.copyfile(path, self.db)

    def file(self, folder: str, *parts: str) -> bytes | None:
        """The bytes of a file nbgrader wrote in a private folder (None if there is none;
        never through a link)."""
        path = self.folders[folder].joinpath(*parts)
        if path.is_symlink() or not path.is_file():
            return None
        return path.read_bytes()


_GRADERS: dict[tuple, _Grader] = {}


def _share_engines() -> None:
    """One SQLAlchemy engine per gradebook URL in this process. nbgrader opens a new
    ``Gradebook`` for each step of each notebook, and a new engine compiles every query
    afresh: 21 ms per use against 8 ms with the engine kept (measured on this course's
    gradebook). ``Gradebook.close`` disposes an engine's connections, not the engine, so
    the next ``Gradebook`` of the same file starts with fresh connections."""
    import functools

    import nbgrader.api

    nbgrader.api.create_engine = functools.lru_cache(maxsize=8)(nbgrader.api.create_engine)


def _limit_process() -> None:
    """Once per process: cap the address space, quiet nbgrader's per-submission
    warnings, keep its database engines (``_share_engines``)."""
    import resource
    import warnings

    if _GRADERS:
        return
    _share_engines()
    limit = worker_memory()
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    # nbgrader's SQLAlchemy use warns on every submission; its logs are captured
    warnings.filterwarnings("ignore", module="nbgrader")
    warnings.filterwarnings("ignore", message=".*not in session.*")


def grader_for(job: Job) -> _Grader:
    """This process's grader for the job's course and settings, made on first use. The
    course root is this machine's ``$COURSE_ROOT`` if set, else the coordinator's path
    (the same path on a shared file system or an identical checkout)."""
    os.environ.update(job.settings)
    root = Path(os.environ.get("COURSE_ROOT") or job.root)
    key = (str(root), tuple(sorted(job.settings.items())))
    if key not in _GRADERS:
        _limit_process()
        nbapi.prepare_environment()
        _GRADERS[key] = _Grader(root)
    return _GRADERS[key]


# ---------------------------------------------------------------------------- the task
def new_result(job: Job, status: str, reason: str) -> dict:
    """A result of ``job`` with no grades and no files yet (see ``grade``)."""
    return {"student": job.student, "assignment": job.assignment, "digest": job.digest,
            "fingerprint": job.fingerprint, "status": status, "reason": reason,
            "seconds": 0.0, "sandboxed": os.environ.get("COURSE_SANDBOX") != "0",
            "timestamp": None, "notebooks": None,
            "files": {"feedback": None, "autograded": None, "verdict": None}}


def grade(job: Job, template: Template) -> dict:
    """Grade one submission (see the module doc). Returns::

        {student, assignment, digest, fingerprint, status ("graded", "feedback failed"
         or "not graded"), reason, seconds, ran ([start, end] in Unix time), sandboxed,
         timestamp (text or None),
         notebooks: {notebook: {"grades": {cell: {auto_score, needs_manual_grade}},
                                "comments": {cell: auto_comment},
                                "late_submission_penalty": float or None}} or None,
         files: {"feedback": bytes or None, "autograded": bytes or None,
                 "verdict": bytes or None}}

    Raises CourseMismatch, KernelStartFailure (or any other exception of the grader's
    own) instead of returning a result that is not the submission's."""
    t0, started = time.perf_counter(), time.time()
    g = grader_for(job)
    mine = fingerprint(g.root, job.assignment)
    if mine != job.fingerprint:
        raise CourseMismatch(
            f"this worker's course at {g.root} differs from the coordinator's (grading "
            f"fingerprint {mine[:12]} != {job.fingerprint[:12]} for {job.assignment}): "
            "give every worker the same checkout of the course, salt and settings")
    g.reset(template)
    s, a = job.student, job.assignment
    problem, outcome = job.problem, {"success": False}
    if job.submission is not None:
        problem = problem or notebook_problem(job.submission.notebook, f"{a}.ipynb")
        ignored = job.submission.ignored
        if ignored:
            problem = "; ".join(filter(None, [problem, (
                f"only {a}.ipynb is graded; ignored in the submission folder: "
                + ", ".join(ignored[:10]) + (" ..." if len(ignored) > 10 else ""))]))
        staging.write(g.folders["submitted"], s, a, job.submission)
        if job.marks:
            _apply_marks(g.db_url, job)
        from .sandbox import execute

        execute.START_FAILURES.clear()
        outcome = g.api.autograde(a, s, force=True, create=True)
        if execute.START_FAILURES:
            raise KernelStartFailure(f"{job.key}: {execute.START_FAILURES[-1]}")
    graded_nb = g.file("autograded", s, a, f"{a}.ipynb")
    result = new_result(job, "graded", problem)
    # nbgrader decides whether it can grade a notebook (it converts old formats, restores
    # deleted test cells); the problem we saw is kept as a note either way
    if outcome.get("success") and graded_nb is not None:
        feedback = g.api.generate_feedback(a, s, force=True)
        if feedback.get("success"):
            # only the feedback page goes back, nothing the student's code wrote beside it
            result["files"]["feedback"] = g.file("feedback", s, a, f"{a}.html")
        else:
            result["status"] = "feedback failed"
            result["reason"] = failure_reason(feedback.get("log", ""))
        result["files"]["autograded"] = graded_nb
        result["files"]["verdict"] = g.file("verdicts", s, f"{a}.json")
        result["timestamp"], result["notebooks"] = _read_grades(g.db_url, a, s)
    else:
        result["status"] = "not graded"
        result["reason"] = problem or failure_reason(
            outcome.get("log", "") + outcome.get("error", ""))
        result["files"]["feedback"] = failure_page(g.root, s, a, result["reason"])
    result["seconds"] = time.perf_counter() - t0
    result["ran"] = [started, time.time()]
    return result


def _apply_marks(db_url: str, job: Job) -> None:
    """The course gradebook's manual marks, put on a new submission in the private one."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        gb.update_or_create_student(job.student)
        gb.update_or_create_submission(job.assignment, job.student)
        for (notebook, cell), score in job.marks.get("scores", {}).items():
            grade = gb.find_grade(cell, notebook, job.assignment, job.student)
            grade.manual_score = score
            grade.needs_manual_grade = False
        for (notebook, cell), text in job.marks.get("comments", {}).items():
            gb.find_comment(cell, notebook, job.assignment, job.student).manual_comment = text
        gb.db.commit()


def _read_grades(db_url: str, assignment: str, student: str):
    """(timestamp text or None, per-notebook grades) of the private gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        sub = gb.find_submission(assignment, student)
        notebooks = {nb.name: {
            "grades": {g.name: {"auto_score": g.auto_score,
                                "needs_manual_grade": bool(g.needs_manual_grade)}
                       for g in nb.grades},
            "comments": {c.name: c.auto_comment for c in nb.comments},
            "late_submission_penalty": nb.late_submission_penalty,
        } for nb in sub.notebooks}
        return (sub.timestamp.isoformat() if sub.timestamp else None), notebooks
