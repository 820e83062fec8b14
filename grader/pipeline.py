"""``python -m grader grade``: autograde a whole class in parallel, incrementally.

1. (``--zip``) collect an LMS download into grader/submitted/ (``grader.intake``: Canvas,
   Moodle or the course's own naming; never overwrites an existing submission).
2. Sync the gradebook with solutions/ (``generate_assignment`` into a throw-away
   release folder, so the committed exercises/ is never touched) when a source changed.
3. Find grader/submitted/<student>/<assignment>/, check names, hash each submission.
4. Grade what changed (new hash, or a new grading fingerprint: sources, registry,
   course_lib, grader code, config) over N worker processes, each with one nbgrader
   API object (its start-up cost is paid once): ``autograde`` then ``generate_feedback``
   per submission; a tqdm bar counts notebooks.
5. Compare the answers for copied code (``grader.similarity``: flagged, never scored).
6. Write grader/grades.csv and the report (grader/report/index.html) from the
   gradebook and the verdicts.

The run state (hash per submission) is written after every finished submission, so
killing the grader and re-running it redoes only what had not finished; hidden cases
come from fixed seeds, so the grades are the same as an uninterrupted run.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import html
import importlib
import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import gradebook, inert, nbapi, registry, scrub, staging
from .sandbox.rundir import fresh_dir, make_run_root

STUDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
STATE_FILE = "grading_state.json"


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
    seconds: float = 0.0


# ---------------------------------------------------------------------------- hashing
def _hash_tree(path: Path, h) -> None:
    for root, dirs, files in os.walk(path, followlinks=False):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
            if os.path.islink(full):
                h.update(b"L" + os.readlink(full).encode("utf-8", "surrogateescape"))
            elif os.path.isfile(full):
                with open(full, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            h.update(b"\0")


def submission_digest(folder: Path) -> str:
    h = hashlib.sha256()
    _hash_tree(folder, h)
    return h.hexdigest()


def _module_files(name: str) -> list[Path]:
    """Source files of a module or package, found without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return []
    f = Path(spec.origin)
    return sorted(f.parent.rglob("*.py")) if f.name == "__init__.py" else [f]


def fingerprint_files(root: Path, assignment: str) -> list[Path]:
    """The files a grade or its feedback depends on besides the submission: grader code,
    the registry, course_lib (the judge and its tolerance live in course_lib.judging).
    The "Read:" pointers' headings and links are hashed by ``fingerprint``; the rest of
    the book is not, so fixing a typo in a chapter regrades nobody."""
    files = [root / "nbgrader_config.py", root / "solutions" / assignment / f"{assignment}.ipynb"]
    files += sorted(Path(__file__).parent.glob("*.py"))
    files += sorted((Path(__file__).parent / "sandbox").glob("*.py"))
    files += _module_files(registry.module_name())
    files += _module_files("course_lib")
    return files


def pointer_texts(assignment: str) -> list[str]:
    """Every "Read:" pointer the assignment's feedback can show: heading text and link."""
    return sorted({str(ex.section) for ex in registry.for_assignment(assignment).values()}
                  | {str(m.section) for ex in registry.for_assignment(assignment).values()
                     for m in ex.mistakes})


def fingerprint(root: Path, assignment: str) -> str:
    """Everything besides the submission that decides a grade or its feedback."""
    from .judge import grading_salt

    h = hashlib.sha256()
    for f in fingerprint_files(root, assignment):
        if f.is_file():
            h.update(str(f.name).encode() + b"\0" + f.read_bytes() + b"\0")
    for text in pointer_texts(assignment):
        h.update(text.encode() + b"\0")
    h.update(grading_salt(root).encode())
    h.update(os.environ.get("COURSE_SANDBOX", "1").encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------- state
def _load_state(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- steps
def sync_gradebook(root: Path, assignments: list[str], state: dict) -> None:
    """Make the gradebook know every assignment's current source (cells, points)."""
    synced = state.setdefault("_sources", {})
    todo = []
    for a in assignments:
        digest = hashlib.sha256(
            (root / "solutions" / a / f"{a}.ipynb").read_bytes()).hexdigest()
        if synced.get(a) != digest:
            todo.append((a, digest))
    db = root / "grader" / "gradebook.db"
    if not todo and (db.exists() or "sqlite" not in _db_url(root)):
        return
    if not todo:
        todo = [(a, synced[a]) for a in assignments]
    with tempfile.TemporaryDirectory(prefix="bptt-release-") as tmp:
        api = nbapi.make_api(root, {"CourseDirectory": {"release_directory": tmp}})
        for a, digest in todo:
            result = api.generate_assignment(a, force=True, create=True)
            if not result.get("success"):
                raise GradingError(f"could not load solutions/{a} into the gradebook:\n"
                                   f"{(result.get('log', '') + result.get('error', ''))[-3000:]}")
            synced[a] = digest


def _db_url(root: Path) -> str:
    return nbapi.load_config(root).CourseDirectory.db_url


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


# ---------------------------------------------------------------------------- workers
_API = None
_ROOT = None
_STAGED = None


WORKER_MEMORY = 6 * 1024**3  # address space of a grading worker (nbgrader + one notebook)


def worker_memory() -> int:
    return int(os.environ.get("COURSE_WORKER_MEMORY") or WORKER_MEMORY)


def _worker_init(root: str, env: dict) -> None:
    global _API, _ROOT, _STAGED
    import resource
    import warnings

    os.environ.update(env)
    # a notebook that makes the worker grow (huge outputs, a flood of messages) costs
    # that notebook (the worker dies, the submission is reported), not the machine
    limit = worker_memory()
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # nbgrader's SQLAlchemy use warns on every submission; its logs are captured
    warnings.filterwarnings("ignore", module="nbgrader")
    warnings.filterwarnings("ignore", message=".*not in session.*")
    _ROOT = Path(root)
    # nbgrader reads each submission from a staged copy that holds only its notebook
    _STAGED = Path(fresh_dir("staged-"))
    _API = nbapi.make_api(root, {"CourseDirectory": {"submitted_directory": str(_STAGED)}})


def _notebook_problem(path: Path) -> str:
    import nbformat

    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"{path.name} is not a valid notebook file (not JSON: {exc})"
    if not isinstance(raw, dict) or "cells" not in raw and "worksheets" not in raw:
        return f"{path.name} is not a Jupyter notebook"
    major = raw.get("nbformat")
    if major != 4:
        return f"{path.name} has notebook format {major}; save it with Jupyter (format 4)"
    try:
        nbformat.validate(nbformat.reads(json.dumps(raw), as_version=4))
    except Exception as exc:  # noqa: BLE001 - any validation error
        return f"{path.name} is not a valid notebook ({str(exc).splitlines()[0][:200]})"
    return ""


def _failure_reason(log: str) -> str:
    lines = [ln for ln in log.splitlines() if "ERROR" in ln or "Error" in ln]
    for ln in lines:
        if "DeadKernel" in ln or "Kernel died" in ln:
            return "the notebook's kernel died while running (e.g. os._exit, a crash or too much memory)"
        if "CellTimeoutError" in ln or "Timeout" in ln:
            return "a cell ran longer than the time limit"
    return (lines[-1][-300:] if lines else "nbgrader could not grade this notebook")


def _write_failure_feedback(root: Path, student: str, assignment: str, reason: str) -> None:
    folder = root / "grader" / "feedback" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    reason = scrub.scrub_paths(reason, course_root=str(root))
    body = (f"<h1>{html.escape(assignment)}: not graded</h1>"
            f"<p>Student: {html.escape(student)}</p><p><strong>Your submission could not be "
            f"graded:</strong> {html.escape(reason)}. Score: 0.</p><p>Fix this and submit "
            f"again; check your notebook first with "
            f"<code>python -m grader check {html.escape(assignment)}.ipynb</code>.</p>")
    (folder / f"{assignment}.html").write_text(inert.page(f"{assignment}: feedback", body))


def grade_one(student: str, assignment: str, note: str = "") -> dict:
    """Autograde and write feedback for one submission (runs in a worker)."""
    root = _ROOT
    t0, started = time.perf_counter(), time.time()
    verdict_json = root / "grader" / "verdicts" / student / f"{assignment}.json"
    verdict_json.unlink(missing_ok=True)
    nb = root / "grader" / "submitted" / student / assignment / f"{assignment}.ipynb"
    problem = note or (_notebook_problem(nb) if nb.is_file() else "")
    try:
        ignored = staging.stage(root / "grader" / "submitted", _STAGED, student, assignment)
    except staging.StagingError as exc:
        problem = problem or f"{assignment}.ipynb: {exc}"
        result = {"success": False}
    else:
        if ignored:
            problem = "; ".join(filter(None, [problem, (
                f"only {assignment}.ipynb is graded; ignored in the submission folder: "
                + ", ".join(ignored[:10]) + (" ..." if len(ignored) > 10 else ""))]))
        result = _API.autograde(assignment, student, force=True, create=True)
    graded_nb = root / "grader" / "autograded" / student / assignment / f"{assignment}.ipynb"
    # nbgrader decides whether it can grade a notebook (it converts old formats, restores
    # deleted test cells); the problem we saw is kept as a note either way
    ok = bool(result.get("success")) and graded_nb.is_file()
    status, reason = "graded", problem
    if ok:
        fb = _API.generate_feedback(assignment, student, force=True)
        if not fb.get("success"):
            status, reason = "feedback failed", _failure_reason(fb.get("log", ""))
        else:  # only the feedback page is served to the student, nothing their code wrote
            inert.keep_only_pages(root / "grader" / "feedback" / student / assignment,
                                  [f"{assignment}.html"])
    else:
        status = "not graded"
        reason = problem or _failure_reason(result.get("log", "") + result.get("error", ""))
        _write_failure_feedback(root, student, assignment, reason)
    return {"student": student, "assignment": assignment, "status": status, "reason": reason,
            "seconds": time.perf_counter() - t0, "ran": [started, time.time()],
            "sandboxed": os.environ.get("COURSE_SANDBOX") != "0"}


# ---------------------------------------------------------------------------- run
def default_workers() -> int:
    """Cores + 1 worker processes (COURSE_GRADE_WORKERS overrides): a worker spends
    about half of each notebook's wall time waiting for its kernel to start, run and
    stop, so one extra worker keeps both cores busy."""
    if os.environ.get("COURSE_GRADE_WORKERS"):
        return max(1, int(os.environ["COURSE_GRADE_WORKERS"]))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores) + 1


def grade(root: Path | str | None = None, workers: int | None = None, zip_path=None,
          assignment: str | None = None, sandbox: bool = True, progress: bool = True,
          force: bool = False, roster=None, log=print) -> RunSummary:
    """Grade the class (see the module doc); ``zip_path`` (an LMS download) is collected
    first, its students mapped through ``roster`` (a CSV path, see grader.intake.Roster)
    if given. The gradebook keeps a copy that comes back if the run fails or damages it
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
    else:
        log("WARNING: grading WITHOUT the sandbox (--no-sandbox): student code runs with "
            "your rights and can read or change your files; grades.csv and the report say so")
    os.environ["COURSE_SANDBOX"] = "1" if sandbox else "0"
    os.environ["COURSE_ROOT"] = str(root)
    os.environ["COURSE_RUN_DIR"] = make_run_root()
    try:
        with gradebook.protected(root, root / "grader" / STATE_FILE, log=log):
            return _grade(root, t0, workers, zip_path, assignment, progress, force, roster, log)
    finally:
        shutil.rmtree(os.environ.pop("COURSE_RUN_DIR"), ignore_errors=True)


def _grade(root, t0, workers, zip_path, assignment, progress, force, roster, log) -> RunSummary:
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
        _run_parallel(root, todo, workers or default_workers(), state, state_path, fps,
                      summary, progress)
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


def _run_parallel(root, todo, n_workers, state, state_path, fps, summary, progress):
    from tqdm import tqdm

    env = {k: v for k, v in os.environ.items()
           if k.startswith(("COURSE_", "PATH", "PYTHON", "MPL", "BPTT_"))}
    subs = state["submissions"]
    pending = list(todo)
    attempts: dict[str, int] = {}
    bar = tqdm(total=len(todo), desc="grading", unit="nb", disable=not progress,
               file=sys.stderr)
    ctx = multiprocessing.get_context("spawn")
    while pending:
        n = min(n_workers, len(pending))
        with cf.ProcessPoolExecutor(n, mp_context=ctx, initializer=_worker_init,
                                    initargs=(str(root), env)) as pool:
            futures = {pool.submit(grade_one, t.student, t.assignment, t.note): t
                       for t in pending}
            pending = []
            for fut in cf.as_completed(futures):
                t = futures[fut]
                key = f"{t.student}/{t.assignment}"
                try:
                    res = fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker died: retry once
                    attempts[key] = attempts.get(key, 0) + 1
                    if attempts[key] < 2:
                        pending.append(t)
                        continue
                    res = {"status": "not graded", "seconds": 0.0,
                           "sandboxed": os.environ.get("COURSE_SANDBOX") != "0",
                           "reason": f"the grader's worker crashed ({type(exc).__name__}; "
                           f"e.g. over its memory budget of {worker_memory() >> 20} MiB)"}
                    _write_failure_feedback(root, t.student, t.assignment, res["reason"])
                # a crashed worker is the grader's failure, not the submission's: no
                # digest, so the next run tries again
                crashed = "worker crashed" in res.get("reason", "")
                subs[key] = {"digest": None if crashed else t.digest,
                             "fingerprint": fps[t.assignment], "status": res["status"],
                             "reason": res["reason"], "seconds": round(res["seconds"], 2),
                             # when the worker started and finished it (Unix time): how
                             # the workers' turns interleaved
                             "ran": [round(s, 3) for s in res.get("ran", ())],
                             "sandboxed": res["sandboxed"]}
                _save_state(state_path, state)
                (summary.graded if res["status"] == "graded" else summary.failed).append(key)
                bar.update(1)
    bar.close()
