"""Grading on a Dask cluster, with one writer: the real grader, real kernels, real Dask.

A small class (two assignments per student, one corrupt notebook) is graded once on the
local process pool: the reference. Then:

* ``--local-cluster 2`` gives the same grades.csv, feedback pages and report numbers
  (with a PostgreSQL gradebook; the reference's is SQLite);
* on a cluster the test starts (``--cluster ADDRESS``; allowed-failures 1; PostgreSQL
  gradebook), a worker killed with SIGKILL while a notebook's kernel runs: that
  notebook is graded again after the kill, every submission is applied exactly once
  with the reference grades, and no process of the killed worker's sandbox survives;
* a poison submission whose worker dies every time ends "not graded" (KilledWorker),
  the rest of the class is graded;
* the two assignments of each student graded at the same moment (each creating the
  student at once) never fail;
* the grader's own failures (an exception, a worker whose course differs) are retried
  and never recorded as the student's grade;
* on the local pool, a notebook whose worker dies whenever it is graded is graded alone
  after two pool breaks and ends "not graded"; the notebook caught with it is graded.

The faults are injected into the Dask workers by tests/cluster_faults.py; the local
pool's workers are killed from outside, by the test.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from helpers import DEMO, DEMO_ENV, REPO, demo_registry, grader_env, read_grades, run_grade

ASSIGNMENTS = ["00_demo", "01_backprop"]
FULL = {"00_demo": 3, "01_backprop": 7}  # autograded points of a perfect notebook
OUTPUTS = ("gradebook.db", "grading_state.json", "feedback", "autograded", "verdicts",
           "report", "grades.csv", "backup", "similarity.json")


@pytest.fixture(scope="module")
def classroom(tmp_path_factory) -> Path:
    """A course root with ada (both assignments solved), bob (a mistake in 00_demo, an
    unmodified 01_backprop) and a corrupt 00_demo notebook; nothing graded yet (the
    release made the workers' template gradebook: every run's copy uses it)."""
    from grader import release, synthetic

    registry = demo_registry()

    root = tmp_path_factory.mktemp("class")
    shutil.copy(REPO / "nbgrader_config.py", root)
    for a in ASSIGNMENTS:
        shutil.copytree((DEMO if a == "00_demo" else REPO) / "solutions" / a,
                        root / "solutions" / a)
    with pytest.MonkeyPatch.context() as mp:  # the demo registry for this set-up only
        mp.setenv("COURSE_EXERCISES_MODULE", "demo_registry")
        mp.syspath_prepend(str(DEMO))
        release.release(root, assignments=ASSIGNMENTS, log=lambda *_: None)
    for a in ASSIGNMENTS:
        solved = synthetic.solved(root / "solutions" / a / f"{a}.ipynb",
                                  root / "exercises" / a / f"{a}.ipynb")
        synthetic.write_submission(root, "ada", a, solved)
        blank = nbformat.read(root / "exercises" / a / f"{a}.ipynb", as_version=4)
        if a == "00_demo":
            key, source = next((k, s) for k, s in registry.MISTAKE_SOURCES.items()
                               if k[0] == a)
            blank = synthetic.with_cell_replaced(solved, synthetic.mistake_fn_name(key, source),
                                                 source)
        synthetic.write_submission(root, "bob", a, blank)
    corrupt = root / "grader" / "submitted" / "corrupt" / "00_demo"
    corrupt.mkdir(parents=True)
    (corrupt / "00_demo.ipynb").write_text('{"cells": [')
    return root


def _copy(classroom: Path, dest: Path) -> Path:
    """A fresh, ungraded copy of the class."""
    shutil.copytree(classroom, dest, ignore=shutil.ignore_patterns(*OUTPUTS))
    return dest


def _env(db_url: str | None = None) -> dict:
    extra = {"COURSE_DB_URL": db_url} if db_url else {}
    return grader_env(DEMO, registry="demo_registry", **extra)


@pytest.fixture(scope="module")
def reference(classroom, tmp_path_factory) -> Path:
    """The class graded on the local process pool with a SQLite gradebook."""
    root = _copy(classroom, tmp_path_factory.mktemp("reference") / "course")
    proc = run_grade(root, "-j", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    grades = read_grades(root)
    assert {k: float(r["auto_score"]) for k, r in grades.items()} == {
        ("ada", "00_demo"): 3, ("ada", "01_backprop"): 7, ("bob", "00_demo"): 1,
        ("bob", "01_backprop"): 0, ("corrupt", "00_demo"): 0}
    assert grades[("corrupt", "00_demo")]["status"] == "not graded"
    return root


def _pages(root: Path) -> dict:
    """Every feedback page of the class: {relative path: bytes}."""
    folder = root / "grader" / "feedback"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _same_as_reference(root: Path, reference: Path, keys=None) -> None:
    """grades.csv rows and feedback pages of ``keys`` are those of the reference run;
    with no ``keys``, of the whole class, and so are the report's numbers."""
    want, got = read_grades(reference), read_grades(root)
    whole = keys is None
    keys = set(want) if whole else keys
    assert {k: got.get(k) for k in keys} == {k: want[k] for k in keys}
    pages = {p: b for p, b in _pages(reference).items() if tuple(p.split("/")[:2]) in keys}
    assert {p: _pages(root).get(p) for p in pages} == pages
    if whole:
        assert set(got) == set(want)
        data = [json.loads((r / "grader" / "report" / "data.json").read_text())
                for r in (root, reference)]
        assert data[0] == data[1]


def _submission_rows(root: Path, db_url: str | None) -> list:
    """(student, assignment) of every submission row of the course gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url or f"sqlite:///{root / 'grader' / 'gradebook.db'}") as gb:
        return sorted((s.student.id, s.assignment.name) for a in gb.assignments
                      for s in a.submissions)


@pytest.fixture
def db_url(postgresql_url):
    """A new empty PostgreSQL database: the cluster's runs write a server gradebook
    (the reference, the local pool's run, and the other cluster tests write SQLite)."""
    return postgresql_url()


def test_local_cluster_grades_like_the_local_pool(classroom, reference, db_url, tmp_path):
    root = _copy(classroom, tmp_path / "course")
    proc = run_grade(root, "--local-cluster", "2", env=_env(db_url))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _same_as_reference(root, reference)
    assert _submission_rows(root, db_url) == sorted(read_grades(reference))


# ---------------------------------------------------------------------------- a cluster
@pytest.fixture(scope="module")
def cluster():
    """(address, client) of a LocalCluster of two grading workers, started here; a task
    whose worker dies is tried on two workers, then ends with KilledWorker."""
    import dask
    from distributed import Client, LocalCluster

    # the workers are spawned from this process: they get its environment and its
    # sys.path (the demo registry, and tests/ for the faults)
    demo = {k: DEMO_ENV[k] for k in ("PATH", "PYTHONPATH", "COURSE_EXERCISES_MODULE")}
    saved = {k: os.environ.get(k) for k in demo}, list(sys.path)
    os.environ.update(demo)
    sys.path[:0] = [str(REPO / "tests"), str(DEMO), str(REPO)]
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
                LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                             resources={"grading": 1}, dashboard_address=None) as lc, \
                Client(lc) as client:
            yield lc.scheduler_address, client
    finally:
        sys.path[:] = saved[1]
        for k, v in saved[0].items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def faults(cluster):
    """Inject tests/cluster_faults.Faults ({student: (action, options)}) into the
    cluster's workers; removed after the test."""
    from cluster_faults import Faults

    _, client = cluster
    injected = []

    def inject(table: dict):
        client.register_plugin(Faults(table), name="faults")
        injected.append(table)

    yield inject
    if injected:
        client.unregister_worker_plugin("faults")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _naming(folder: Path) -> list[str]:
    """The command lines of the live processes that name a path inside ``folder``."""
    lines = [_cmdline(int(p)) for p in os.listdir("/proc") if p.isdigit()]
    return [line for line in lines if f"{folder}/" in line]


def _alive(pids) -> set:
    from grader.sandbox.kernel import _procs

    return set(pids) & set(_procs())


def _kernel_sandbox(pid: int) -> set:
    """The processes under ``pid`` once a sandboxed kernel runs there (bwrap, the
    sandbox's init, the kernel itself); empty before. A bwrap alone is not enough: the
    worker's first bwrap is the short check that a sandbox can be made at all, and a
    kernel's bwrap has not yet started the kernel."""
    from grader.sandbox.kernel import descendants

    tree = descendants(pid)
    lines = {p: _cmdline(p) for p in tree}
    # the kernel's own command line (bwrap's holds the same words after its flags)
    kernels = {p for p, c in lines.items() if c.startswith(sys.executable)
               and "ipykernel_launcher" in c}
    sandboxes = {p for p, c in lines.items() if c.startswith("bwrap") and " -- true" not in c}
    return tree if kernels and len(sandboxes) >= 2 else set()


def _counts(proc_stdout: str) -> str:
    """The run's own count of what it graded ("graded 4, not gradable 1")."""
    found = re.search(r"graded \d+, not gradable \d+", proc_stdout)
    assert found, proc_stdout
    return found[0]


def test_a_worker_killed_mid_grading(cluster, classroom, reference, db_url, faults, tmp_path):
    """SIGKILL a worker while its notebook's kernel runs (ada's kernels wait until the
    kill, so that the test finds one): the notebook it was grading is graded again on
    another worker after the kill, every submission is applied once (the run counts
    each once) with the reference grades; no process of the killed worker's sandbox
    (bwrap, its init, the kernel) survives it."""
    address, client = cluster
    root = _copy(classroom, tmp_path / "course")
    hold = tmp_path / "hold"
    hold.mkdir()
    faults({"ada": ("hold", {"folder": str(hold)})})
    proc = subprocess.Popen([sys.executable, "-m", "grader", "grade", "--root", str(root),
                             "-q", "--cluster", address], cwd=REPO, env=_env(db_url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim, sandbox, grading = None, set(), []
    deadline = time.monotonic() + 600
    while victim is None and proc.poll() is None and time.monotonic() < deadline:
        for worker_address, pid in client.run(os.getpid).items():
            sandbox = _kernel_sandbox(pid)
            if sandbox:
                victim = pid
                grading = client.processing([worker_address])[worker_address]
                break
        time.sleep(0.1)
    if victim is None:
        (hold / "release").touch()  # the run ends, and says what it did
        out, err = proc.communicate(timeout=600)
        pytest.fail(f"no worker was seen running a kernel; the run said:\n{out}{err}")
    os.kill(victim, signal.SIGKILL)
    killed_at = time.time()
    (hold / "release").touch()
    out, err = proc.communicate(timeout=1200)
    assert proc.returncode == 0, out + err
    time.sleep(1)  # the kernel's sandbox dies with its worker, not later
    assert not _alive(sandbox), [_cmdline(p) for p in _alive(sandbox)]
    assert victim not in client.run(os.getpid).values()
    _same_as_reference(root, reference)
    assert _submission_rows(root, db_url) == sorted(read_grades(reference))
    want = read_grades(reference).values()
    assert _counts(out) == (f"graded {sum(r['status'] == 'graded' for r in want)}, not "
                            f"gradable {sum(r['status'] == 'not graded' for r in want)}")
    state = json.loads((root / "grader" / "grading_state.json").read_text())["submissions"]
    assert sorted(state) == sorted(f"{s}/{a}" for s, a in read_grades(reference))
    assert len(grading) == 1, grading  # one notebook at a time per worker
    [task] = grading  # "grade <student>/<assignment> <run>"
    assert state[task.split()[1]]["ran"][0] > killed_at, (task, state[task.split()[1]])


def test_a_poison_submission_ends_not_graded_and_the_rest_finishes(
        cluster, classroom, reference, faults, tmp_path):
    address, _ = cluster
    root = _copy(classroom, tmp_path / "course")
    poison = root / "grader" / "submitted" / "poison" / "00_demo"
    shutil.copytree(root / "grader" / "submitted" / "ada" / "00_demo", poison)
    faults({"poison": ("die", {})})
    proc = run_grade(root, "--cluster", address)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = read_grades(root)[("poison", "00_demo")]
    assert row["status"] == "not graded" and "KilledWorker" in row["note"], row
    page = (root / "grader" / "feedback" / "poison" / "00_demo" / "00_demo.html").read_text()
    assert "not graded" in page and "KilledWorker" in page
    state = json.loads((root / "grader" / "grading_state.json").read_text())["submissions"]
    assert state["poison/00_demo"]["digest"] is None  # the next run tries it again
    _same_as_reference(root, reference, keys=set(read_grades(reference)))


def test_two_assignments_of_a_student_graded_at_the_same_moment(
        cluster, classroom, reference, faults, tmp_path):
    """Each student's two assignments create the student at the same moment (a barrier
    in the workers where a gradebook's student is made, the race of two writers of one
    gradebook), for every student with two: nothing fails, one student row, the
    reference grades."""
    address, _ = cluster
    root = _copy(classroom, tmp_path / "course")
    pairs = ["ada", "bob"]
    for student in pairs:
        (tmp_path / student).mkdir()
    faults({s: ("meet", {"folder": str(tmp_path / s), "expect": len(ASSIGNMENTS)})
            for s in pairs})
    proc = run_grade(root, "--cluster", address)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for student in pairs:
        met = sorted(p.name for p in (tmp_path / student).glob("*.met"))
        assert met == [f"{a}.met" for a in ASSIGNMENTS], (student, met)
    _same_as_reference(root, reference)
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'grader' / 'gradebook.db'}") as gb:
        assert sorted(s.id for s in gb.students) == ["ada", "bob", "corrupt"]


def test_the_graders_own_failures_are_retried_never_graded(
        cluster, classroom, reference, faults, tmp_path):
    """ada's jobs fail every time (an exception in the grader), bob's 00_demo fails
    once, the kernel of bob's 01_backprop cannot start once, the corrupt notebook's
    worker has another course: bob is graded as in the reference; ada and corrupt get
    no grade, no feedback and no digest, and the run says so."""
    address, _ = cluster
    root = _copy(classroom, tmp_path / "course")
    faults({"ada": ("fail", {}), "bob/00_demo": ("fail-first", {}),
            "bob/01_backprop": ("no-kernel-first", {}), "corrupt": ("mismatch", {})})
    proc = run_grade(root, "--cluster", address)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "3 submissions were not graded because of the grader's own failures" in proc.stderr
    _same_as_reference(root, reference, keys={("bob", a) for a in ASSIGNMENTS})
    state = json.loads((root / "grader" / "grading_state.json").read_text())["submissions"]
    for key in ("ada/00_demo", "ada/01_backprop", "corrupt/00_demo"):
        assert state[key]["status"] == "grader failure" and state[key]["digest"] is None, key
        assert not (root / "grader" / "feedback" / key).exists(), key
    assert "fault injected by the test" in state["ada/00_demo"]["reason"]
    assert "differs from the coordinator's" in state["corrupt/00_demo"]["reason"]
    assert _submission_rows(root, None) == [("bob", a) for a in ASSIGNMENTS]
    grades = read_grades(root)
    assert grades[("ada", "00_demo")]["status"] == "grader failure"
    assert float(grades[("ada", "00_demo")]["score"]) == 0


# ---------------------------------------------------------------------------- local pool
def _kill_workers_grading(proc: subprocess.Popen, student: str, seconds: float) -> list:
    """Until ``proc`` (a grading run on the local pool) ends: SIGKILL each pool worker as
    soon as it starts a kernel sandbox for ``student`` (the sandbox's command line names
    the student's record folder), as a notebook that kills its worker every time would.
    Stops the run after ``seconds``. Returns the pids killed."""
    from grader.sandbox.kernel import _procs, descendants

    mark = re.compile(rf"--setenv COURSE_RECORD_DIR \S*/{re.escape(student)}-[^/ ]*/records ")
    killed: list = []
    deadline = time.monotonic() + seconds
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            break
        parents = _procs()
        for pid in descendants(proc.pid):
            line, worker = _cmdline(pid), parents.get(pid)
            if (line.startswith("bwrap") and mark.search(line) and worker not in killed
                    and parents.get(worker) == proc.pid):  # a pool worker: the run's child
                os.kill(worker, signal.SIGKILL)
                killed.append(worker)
        time.sleep(0.05)
    return killed


def test_the_local_pool_grades_a_notebook_that_kills_its_worker_alone(
        classroom, reference, tmp_path, short_tmp_path):
    """``-j 2``: a notebook whose worker dies whenever it is graded breaks the pool twice
    together with ada's notebook; each is then graded alone, ada's gets its reference
    grade, the poison's worker dies a third time and it ends "not graded" (WorkerLost,
    with the reason), and the rest of the class is graded. No sandbox outlives the run,
    although each worker is killed the moment its sandbox appears, before bubblewrap can
    ask to die with it."""
    root = _copy(classroom, tmp_path / "course")
    poison = "a-poison"  # sorts first: it and ada's notebook open each pool together
    shutil.copytree(root / "grader" / "submitted" / "ada" / "00_demo",
                    root / "grader" / "submitted" / poison / "00_demo")
    proc = subprocess.Popen([sys.executable, "-m", "grader", "grade", "--root", str(root),
                             "-q", "-j", "2", "--assignment", "00_demo"], cwd=REPO,
                            env={**DEMO_ENV, "TMPDIR": str(short_tmp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = _kill_workers_grading(proc, poison, seconds=300)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert len(killed) == 3, killed  # two pool breaks, then graded alone
    # (the kills above found each sandbox by its command line, inside short_tmp_path)
    left = _naming(short_tmp_path)
    assert not left, f"{len(left)} processes of the run outlived it: {left[0][:200]}"
    row = read_grades(root)[(poison, "00_demo")]
    assert row["status"] == "not graded" and "also when it was graded alone" in row["note"], row
    page = (root / "grader" / "feedback" / poison / "00_demo" / "00_demo.html").read_text()
    assert "not graded" in page and "also when it was graded alone" in page
    state = json.loads((root / "grader" / "grading_state.json").read_text())["submissions"]
    assert state[f"{poison}/00_demo"]["digest"] is None  # the next run tries it again
    _same_as_reference(root, reference,
                       keys={k for k in read_grades(reference) if k[1] == "00_demo"})
