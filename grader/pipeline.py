"""``python -m grader grade``: autograde a whole class in parallel, incrementally.

This process is the coordinator; workers only grade (grader.worker).

1. (``--zip``) collect an LMS download into grader/submitted/ (``grader.intake``: Canvas,
   Moodle or the course's own naming; never overwrites an existing submission).
2. Sync the gradebook with solutions/ (``generate_assignment`` into a throw-away
   release folder, so the committed exercises/ is never touched) when a source changed;
   a new SQLite gradebook is a copy of the workers' template gradebook (below): the
   gradebook's schema and assignments exist before any worker starts.
3. Find grader/submitted/<student>/<assignment>/, check names, hash each submission.
4. Grade what changed (new hash, or a new grading fingerprint: sources, registry,
   course_lib, grader code, config; grader.fingerprint). Each submission becomes a job
   (grader.worker.Job: the notebook's bytes, the student's manual marks, the
   fingerprint) graded on a runner (grader.runners): N local worker processes (``-j``),
   a Dask cluster (``--cluster ADDRESS``) or a LocalCluster (``--local-cluster N``). A
   worker grades against a private copy of a template gradebook (the assignments, made
   here when a source changed: grader/template.db) and sends back the grades and files;
   this process alone applies each result (grader.record: one gradebook transaction per
   submission, the feedback, autograded notebook and verdict files, the run state). A
   tqdm bar counts notebooks.
   A worker that dies on every try leaves the notebook "not graded" with the reason;
   the grader's own failures are retried, then reported, never stored as a grade.
5. Compare the answers for copied code (``grader.similarity``: flagged, never scored).
6. Write grader/grades.csv and the report (grader/report/index.html) from the
   gradebook and the verdicts.

The run state (hash per submission) is written after every applied result, so
killing the grader and re-running it redoes only what had not finished; hidden cases
come from fixed seeds, so the grades are the same as an uninterrupted run. A
submission whose grading failed on the grader's side, or whose worker died, keeps no
hash: the next run grades it again.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import gradebook, nbapi, record, registry, runners, staging, worker
from .atomic_files import replace_text
from .fingerprint import fingerprint, submission_digest
from .sandbox.rundir import make_run_root, remove_run_root

STUDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
STATE_FILE = "grading_state.json"
TEMPLATE_FILE = "template.db"  # the workers' gradebook: the assignments, no student
TEMPLATE_KEY = "template.key"  # what it was made from (sources and configuration)


class GradingError(Exception):
    """A problem with the grader's input that stops the run (message for the user)."""


@dataclass
class Task:
    student: str
    assignment: str
    digest: str
    note: str = ""


@dataclass
class RunSummary:
    graded: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    errors: list = field(default_factory=list)  # the grader's own failures (retried next run)
    seconds: float = 0.0


# ---------------------------------------------------------------------------- state
def _load_state(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_state(path: Path, state: dict) -> None:
    replace_text(path, json.dumps(state, indent=1, sort_keys=True))


# ---------------------------------------------------------------------------- steps
def source_digests(root: Path, assignments: list[str]) -> dict[str, str]:
    """{assignment: sha256 of its source notebook}."""
    return {a: hashlib.sha256((root / "solutions" / a / f"{a}.ipynb").read_bytes()).hexdigest()
            for a in assignments}


def sync_gradebook(root: Path, assignments: list[str], state: dict) -> None:
    """Make the gradebook know every assignment's current source (cells, points). A new
    SQLite gradebook starts as a copy of the workers' template (``template_gradebook``:
    every assignment, no student), which is generated once instead of twice; an existing
    or server gradebook gets ``generate_assignment`` for each changed source."""
    sources = source_digests(root, assignments)
    synced = state.setdefault("_sources", {})
    db = gradebook.sqlite_file(root)
    if db is not None and not db.exists():
        template_gradebook(root, assignments)
        gradebook.sqlite_copy(root / "grader" / TEMPLATE_FILE, db)
    else:
        changed = [a for a in assignments if synced.get(a) != sources[a]]
        if changed:
            with tempfile.TemporaryDirectory(prefix="bptt-release-") as tmp:
                generate(root, changed, {"release_directory": tmp})
    synced.update(sources)


def generate(root: Path, assignments: list[str], course_dir: dict, log=None) -> None:
    """``generate_assignment`` for each of ``assignments``, with the course folders
    overridden by ``course_dir`` (a release folder, a gradebook); ``log`` is told where
    each student notebook went."""
    api = nbapi.make_api(root, {"CourseDirectory": course_dir})
    for a in assignments:
        result = api.generate_assignment(a, force=True, create=True)
        if not result.get("success"):
            raise GradingError(f"could not generate solutions/{a} (student notebook and "
                               "gradebook entries):\n"
                               f"{(result.get('log', '') + result.get('error', ''))[-3000:]}")
        if log:
            log(f"released {a} -> {Path(api.coursedir.release_directory) / a}")


def discover(root: Path, assignments: list[str]):
    """(tasks, problems): one task per grader/submitted/<student>/<assignment>/."""
    submitted = root / "grader" / "submitted"
    problems: list[str] = []
    tasks: list[Task] = []
    if not submitted.is_dir():
        raise GradingError(
            f"no submissions folder {submitted}: put each submission in "
            "grader/submitted/<student>/<assignment>/<assignment>.ipynb or pass --zip FILE")
    for sdir in sorted(submitted.iterdir()):
        if sdir.is_symlink() or not sdir.is_dir():
            problems.append(f"ignored {sdir.name!r}: not a student folder")
            continue
        if not STUDENT_RE.match(sdir.name):
            problems.append(f"ignored student folder {sdir.name!r}: use letters, digits, "
                            "'.', '_' or '-' only")
            continue
        adirs = [p for p in sorted(sdir.iterdir()) if p.is_dir() and not p.is_symlink()]
        if not adirs:
            problems.append(f"student {sdir.name}: no assignment folder inside "
                            f"(expected e.g. {sdir.name}/{assignments[0] if assignments else 'a'}/)")
        for adir in adirs:
            a = adir.name
            if a not in assignments:
                problems.append(f"student {sdir.name}: unknown assignment folder {a!r} "
                                f"(known: {', '.join(assignments)})")
                continue
            nb = adir / f"{a}.ipynb"
            note = ""
            if not nb.exists():
                others = [p.name for p in adir.glob("*.ipynb")]
                note = (f"no notebook {a}.ipynb in the submission"
                        + (f" (found {', '.join(others)}: rename it to {a}.ipynb)" if others else
                           " (the folder is empty)" if not any(adir.iterdir()) else ""))
            elif nb.is_symlink() or not nb.is_file():
                note = f"{a}.ipynb is not a regular file"
            tasks.append(Task(sdir.name, a, submission_digest(adir), note))
    return tasks, problems


# ---------------------------------------------------------------------------- run
def default_workers() -> int:
    """One worker process per core (COURSE_GRADE_WORKERS overrides). Measured with
    bench/grade.py on 2 cores, 42 notebooks: 2 workers 65.6 s, 3 workers 75.4 s (a worker
    also copies its gradebook and ships results back, so a spare worker does not fill
    idle time, it competes for the cores); 2 workers 48.7-53.4 s since a worker kills its
    kernel at once, compiles the feedback templates once and is forked, not spawned."""
    if os.environ.get("COURSE_GRADE_WORKERS"):
        return max(1, int(os.environ["COURSE_GRADE_WORKERS"]))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores)


@contextlib.contextmanager
def start_runner(workers: int | None = None, cluster: str | None = None,
                 local_cluster: int | None = None):
    """The runner of a run (grader.runners): the Dask cluster at ``cluster``, a
    LocalCluster of ``local_cluster`` workers, or else ``workers`` local processes. A
    LocalCluster starts at once, in the background, and stops on leaving."""
    if cluster and local_cluster:
        raise GradingError("--cluster ADDRESS grades on an existing cluster and "
                           "--local-cluster N starts one: give one of them")
    if not (cluster or local_cluster):
        yield functools.partial(runners.local_pool, n_workers=workers or default_workers())
        return
    try:
        import distributed  # noqa: F401 - only to say what is missing
    except ImportError:
        raise GradingError("grading on a cluster needs Dask: pip install "
                           "'dask[distributed]' (part of the course's grade extra)") from None
    if cluster:
        yield functools.partial(runners.dask_cluster, address=cluster)
        return
    local = runners.LocalDaskCluster(local_cluster)
    try:
        yield functools.partial(runners.dask_cluster, local=local)
    finally:
        local.close()


def grade(root: Path | str | None = None, workers: int | None = None, zip_path=None,
          assignment: str | None = None, sandbox: bool = True, progress: bool = True,
          force: bool = False, roster=None, log=print, cluster: str | None = None,
          local_cluster: int | None = None) -> RunSummary:
    """Grade the class (see the module doc); ``zip_path`` (an LMS download) is collected
    first, its students mapped through ``roster`` (a CSV path, see grader.intake.Roster)
    if given. The notebooks are graded by ``workers`` local processes, or on the Dask
    cluster at ``cluster``, or on a LocalCluster of ``local_cluster`` workers. The
    gradebook keeps a copy that comes back if the run fails or damages it
    (grader/gradebook.py)."""
    root = Path(root or nbapi.REPO_ROOT).resolve()
    t0 = time.perf_counter()
    nbapi.prepare_environment()
    if sandbox:
        from .sandbox import problem, views

        why = problem()
        if why is None:
            try:  # the kernel's course_lib must not hand out what the exercises grade
                views.check_references(registry.exercises())
            except RuntimeError as exc:
                why = str(exc)
        if why:
            raise GradingError(f"cannot grade safely here, so nothing was graded: "
                               f"{why}. (Only for trusted submissions: --no-sandbox runs "
                               "student code with your rights.)")
        if not (cluster or local_cluster):
            from .sandbox import kernel

            kernel.warm_up()
    else:
        log("WARNING: grading WITHOUT the sandbox (--no-sandbox): student code runs with "
            "your rights and can read or change your files; grades.csv and the report say so")
    os.environ["COURSE_SANDBOX"] = "1" if sandbox else "0"
    os.environ["COURSE_ROOT"] = str(root)
    os.environ["COURSE_RUN_DIR"] = make_run_root()
    try:
        with start_runner(workers, cluster, local_cluster) as runner, \
                gradebook.protected(root, root / "grader" / STATE_FILE, log=log):
            return _grade(root, t0, runner, zip_path, assignment, progress, force, roster, log)
    finally:
        remove_run_root(os.environ.pop("COURSE_RUN_DIR"))


def _grade(root, t0, runner, zip_path, assignment, progress, force, roster, log) -> RunSummary:
    assignments = nbapi.source_assignments(root)
    if not assignments:
        raise GradingError(f"no source notebooks in {root / 'solutions'}")
    if assignment and assignment not in assignments:
        raise GradingError(f"unknown assignment {assignment!r} (known: {', '.join(assignments)})")
    summary = RunSummary()
    (root / "grader").mkdir(exist_ok=True)
    if zip_path:
        _collect_zip(root, Path(zip_path), assignments, roster, assignment, log)
    tasks, summary.problems = discover(root, assignments)
    state_path = root / "grader" / STATE_FILE
    state = _load_state(state_path)
    book = gradebook.identity(root)
    if state.get("_gradebook", book) != book:
        # what the run state says was graded is in another gradebook than this one
        log(f"the gradebook is now {book} (the last run's was {state['_gradebook']}): "
            "every submission is graded into it")
        state = {}
    state["_gradebook"] = book
    sync_gradebook(root, assignments, state)
    _save_state(state_path, state)
    for p in summary.problems:
        log(f"warning: {p}")
    fps = {a: fingerprint(root, a) for a in assignments}
    subs = state.setdefault("submissions", {})
    todo = []
    for t in tasks:
        key = f"{t.student}/{t.assignment}"
        old = subs.get(key) or {}
        if assignment and t.assignment != assignment:
            summary.skipped.append(key)  # not asked for: kept as graded before
            continue
        done = (old.get("digest") == t.digest and old.get("fingerprint") == fps[t.assignment]
                and (root / "grader" / "feedback" / t.student / t.assignment).is_dir())
        if done and not force:
            summary.skipped.append(key)
        else:
            todo.append(t)
    log(f"{len(tasks)} submissions: {len(todo)} to grade, {len(summary.skipped)} unchanged")
    if todo:
        _run_tasks(root, todo, runner, state, state_path, fps, summary, progress)
    from . import report, similarity

    present = {(t.student, t.assignment) for t in tasks}
    similarity.analyse(root, present)
    report.write_grades_csv(root, present, state)
    report.write_report(root, present)
    summary.seconds = time.perf_counter() - t0
    return summary


def _collect_zip(root, zip_path, assignments, roster, assignment, log) -> None:
    from . import intake

    result = intake.collect(root, zip_path, assignments,
                            roster=intake.Roster.read(Path(roster)) if roster else None,
                            assignment=assignment, log=log)
    if not (root / "grader" / "submitted").is_dir():
        raise GradingError(f"nothing to grade: no file of {zip_path.name} could be placed "
                           f"({result.files} files, reasons above)")


def template_gradebook(root: Path, assignments: list[str], release: bool = False,
                       log=None) -> worker.Template:
    """A gradebook holding every assignment and no student, for the workers to copy.
    It is made (``generate_assignment``, 4.5 s for six assignments) when a source or the
    configuration changed since the last one: kept as grader/template.db, with its key
    beside it (grader/template.key; a new course gradebook or a lost run state does not
    make it again). With ``release`` (``python -m grader release`` of every assignment),
    it is made whatever its key says, and the student notebooks go to exercises/: one
    pass of nbgrader gives both."""
    key = hashlib.sha256(json.dumps(source_digests(root, assignments), sort_keys=True).encode()
                         + (root / "nbgrader_config.py").read_bytes()).hexdigest()
    path, key_path = root / "grader" / TEMPLATE_FILE, root / "grader" / TEMPLATE_KEY
    try:
        made_from = key_path.read_text()
    except OSError:
        made_from = None
    if release or made_from != key or gradebook.problem(path):
        path.parent.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".template-", dir=path.parent) as tmp:
            db = Path(tmp) / "gradebook.db"
            gradebook.new_gradebook(f"sqlite:///{db}")
            folders = {"db_url": f"sqlite:///{db}"}
            if not release:
                folders["release_directory"] = str(Path(tmp) / "release")
            generate(root, assignments, folders, log=log)
            key_path.unlink(missing_ok=True)  # no key beside a template being replaced
            os.replace(db, path)
            (Path(tmp) / TEMPLATE_KEY).write_text(key)
            os.replace(Path(tmp) / TEMPLATE_KEY, key_path)
    data = path.read_bytes()
    return worker.Template(hashlib.sha256(data).hexdigest(), data)


def make_job(root: Path, gb, task: Task, fingerprint_: str) -> worker.Job:
    """What a worker needs to grade ``task``: the submission as read here (never a path),
    the student's manual marks, this run's fingerprint and settings."""
    sub, problem = None, task.note
    if not problem:
        try:
            sub = staging.read(root / "grader" / "submitted", task.student, task.assignment)
        except staging.StagingError as exc:
            problem = f"{task.assignment}.ipynb: {exc}"
    return worker.Job(task.student, task.assignment, task.digest, fingerprint_, str(root), sub,
                      problem, record.manual_marks(gb, task.assignment, task.student),
                      worker.settings())


def _lost(root: Path, job: worker.Job, why: Exception) -> dict:
    """The "not graded" result of a notebook whose worker died on every try."""
    reason = (f"{why} (e.g. the notebook made it go over its memory budget of "
              f"{worker.worker_memory() >> 20} MiB)")
    result = worker.new_result(job, "not graded", reason)
    result["files"]["feedback"] = worker.failure_page(root, job.student, job.assignment, reason)
    return result


def _run_tasks(root, todo, runner, state, state_path, fps, summary, progress):
    """Send the jobs to ``runner`` and apply what comes back, here, one submission at a
    time: this process is the only writer of the gradebook and the course folders."""
    from nbgrader.api import Gradebook
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: local workers are forked from here
    subs = state["submissions"]
    template = template_gradebook(root, sorted(fps))
    with Gradebook(gradebook.db_url(root)) as gb:
        jobs = [make_job(root, gb, t, fps[t.assignment]) for t in todo]
        applied: set[str] = set()
        with tqdm(total=len(jobs), desc="grading", unit="nb", disable=not progress,
                  file=sys.stderr) as bar, contextlib.closing(runner(jobs, template)) as outcomes:
            for job, outcome in outcomes:
                if job.key in applied:  # a task that ran twice: its first result counts
                    continue
                applied.add(job.key)
                bar.update(1)
                if isinstance(outcome, runners.WorkerLost):
                    # the grader lost its worker: reported, and no digest, so the next
                    # run tries again
                    outcome = _lost(root, job, outcome)
                    record.apply(root, gb, outcome, state, retry=True)
                elif isinstance(outcome, Exception):
                    # the grader's own failure is never the student's grade: nothing is
                    # written but the run state's note (no digest: the next run retries)
                    reason = f"grader failure, not the submission's: {type(outcome).__name__}: {outcome}"
                    subs[job.key] = {**subs.get(job.key, {}), "digest": None,
                                     "fingerprint": job.fingerprint,
                                     "status": "grader failure", "reason": reason}
                    summary.errors.append(f"{job.key}: {reason}")
                    _save_state(state_path, state)
                    continue
                else:
                    record.apply(root, gb, outcome, state)
                _save_state(state_path, state)
                (summary.graded if outcome["status"] == "graded" else summary.failed).append(
                    job.key)
