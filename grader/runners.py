"""Where grading tasks run: a local process pool, or a Dask cluster.

A runner takes the jobs and the template gradebook and yields ``(job, outcome)`` pairs
in the order they finish; the outcome is the task's result (a dict, see
``grader.worker.grade``), ``WorkerLost`` when the worker process died while grading the
notebook every time it was tried, or the exception the grader raised on every try
(``RETRIES`` more tries after the first). The coordinator (grader.pipeline) applies
what comes out; runners write nothing.

* ``local_pool``: N worker processes on this machine (``python -m grader grade -j N``),
  forked from this one once it has imported what grading uses (a spawned worker spent
  seconds importing nbgrader and nbconvert again, in every worker of every run).
  A worker that dies breaks the whole pool: a fresh pool retries what was unfinished,
  and a notebook caught in two breaks is graded alone to tell whose death it was.
* ``dask_cluster``: workers of a Dask distributed cluster, an existing one
  (``--cluster tcp://HOST:8786``: ``dask scheduler`` and ``dask worker`` started on each
  machine, or ``SSHCluster``, dask-jobqueue, dask-kubernetes) or a ``LocalCluster``
  started for the run (``--local-cluster N``, ``LocalDaskCluster``: it starts while the
  coordinator prepares the run). Each task needs one unit of the workers'
  ``grading`` resource, and every worker offers one: a worker grades one notebook at a
  time whatever its thread count. A task whose worker dies is rerun elsewhere by the
  scheduler (so it can run twice; only its result counts); after
  ``distributed.scheduler.allowed-failures`` deaths it ends with ``KilledWorker``.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import importlib
import multiprocessing
import os
import sys
import uuid
from concurrent.futures.process import BrokenProcessPool

from . import worker

RETRIES = 2  # more tries of a task whose grader code raised (another worker may do)
# what a grading worker imports, imported here before the local workers are forked
PRELOAD = ("nbgrader.apps", "grader.sandbox.execute", "grader.worker")
RESOURCE = "grading"
START_WORKERS = ("dask worker {address} --nworkers 1 --nthreads 1 "
                 f"--resources {RESOURCE}=1")


class WorkerLost(RuntimeError):
    """The worker process died while grading this notebook, on every try."""


# ---------------------------------------------------------------------------- local
def _pool_init(env: dict) -> None:
    os.environ.update(env)


def _start_method():
    """Fork (Linux), with the grading modules imported first; spawn elsewhere, where
    fork is unsafe, and then each worker imports them itself."""
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    for name in PRELOAD:
        importlib.import_module(name)
    return multiprocessing.get_context("fork")


_FORKSERVER = "forkserver" if sys.platform.startswith("linux") else "spawn"


def _preload_forkserver() -> None:
    """Have Dask's forkserver (started with the first worker) import ``PRELOAD`` and
    warm the sandbox up (``grader.sandbox.warm``) before it forks the workers."""
    from distributed.utils import get_mp_context

    ctx = get_mp_context()  # Dask's own preload list is set here, once
    if _FORKSERVER == "forkserver":
        ctx.set_forkserver_preload(["distributed", *PRELOAD, "grader.sandbox.warm"])


def local_pool(jobs: list, template, n_workers: int):
    """Grade ``jobs`` on ``n_workers`` processes of this machine (forked, see
    ``_start_method``; each has this process's course settings). A worker that dies
    breaks the whole pool and every task in it: the pool holds only as many tasks as
    it has workers, a fresh pool grades the unfinished ones again, and a task caught
    in two breaks is graded alone, where a death can only be its own (``WorkerLost``)."""
    env = {k: v for k, v in os.environ.items()
           if k.startswith(("COURSE_", "PATH", "PYTHON", "MPL", "BPTT_"))}
    breaks: collections.Counter = collections.Counter()
    errors: collections.Counter = collections.Counter()
    pending = collections.deque(jobs)
    while pending:
        suspect = next((job for job in pending if breaks[job.key] >= 2), None)
        if suspect is None:
            batch, pending, size = pending, collections.deque(), n_workers
        else:
            pending.remove(suspect)
            batch, size = collections.deque([suspect]), 1
        for job, outcome in _pool_round(batch, size, template, env):
            if isinstance(outcome, BrokenProcessPool):
                breaks[job.key] += 1
                if suspect is None:
                    pending.append(job)
                else:
                    yield job, WorkerLost("the grading worker process died while grading "
                                          "this notebook, also when it was graded alone")
            elif isinstance(outcome, Exception):  # the grader's failure
                errors[job.key] += 1
                if errors[job.key] <= RETRIES:
                    pending.append(job)
                else:
                    yield job, outcome
            else:
                yield job, outcome
        pending.extend(batch)  # not sent before the pool broke


def _pool_round(batch: collections.deque, size: int, template, env: dict):
    """Grade the jobs of ``batch`` (taken from its left) on a fresh pool of ``size``
    processes, at most ``size`` at a time; yields (job, result or exception) and stops
    sending when the pool breaks."""
    with cf.ProcessPoolExecutor(min(size, len(batch)), mp_context=_start_method(),
                                initializer=_pool_init, initargs=(env,)) as pool:
        running: dict = {}
        broken = False
        while running or batch and not broken:
            while batch and not broken and len(running) < size:
                try:
                    fut = pool.submit(worker.grade, batch[0], template)
                except BrokenProcessPool:  # broke before its futures said so
                    broken = True
                    break
                running[fut] = batch.popleft()
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                job = running.pop(fut)
                try:
                    outcome = fut.result()
                except Exception as exc:  # noqa: BLE001 - given to the caller to sort
                    outcome = exc
                    broken = broken or isinstance(exc, BrokenProcessPool)
                yield job, outcome


# ---------------------------------------------------------------------------- Dask
def grading_slots(client) -> int:
    """How many notebooks the cluster's workers can grade at once now."""
    return sum(w.get("resources", {}).get(RESOURCE, 0)
               for w in client.scheduler_info(n_workers=-1)["workers"].values())


def check_workers(client, address: str) -> None:
    """Stop with a clear message when no worker of the cluster can take a task."""
    from .pipeline import GradingError

    try:
        client.wait_for_workers(1, timeout=60)
    except TimeoutError:
        raise GradingError(f"no Dask worker joined the scheduler at {address} within 60 s: "
                           f"start some with `{START_WORKERS.format(address=address)}`") from None
    if not grading_slots(client):
        raise GradingError(f"no worker of the Dask cluster at {address} offers the "
                           f"'{RESOURCE}' resource, so none would grade: start the workers "
                           f"with `{START_WORKERS.format(address=address)}`")


class LocalDaskCluster:
    """A Dask LocalCluster of ``n_workers`` grading workers (one thread each) for one
    run, started in a thread as soon as it is made: it starts while the coordinator
    prepares the run (on 2 cores about 4 s: Dask's forkserver imports the grading
    modules, then forks the workers). ``address`` waits until it has started."""

    def __init__(self, n_workers: int):
        self._thread = cf.ThreadPoolExecutor(1, thread_name_prefix="local-cluster")
        self._cluster = self._thread.submit(self._start, n_workers)

    @staticmethod
    def _start(n_workers: int):
        import logging

        import dask
        from distributed import LocalCluster

        # It competes with the grading for the cores, so it does only what grading needs:
        # no statistical profiler (it samples the grading thread every 10 ms) and no
        # system monitor, both for a dashboard this run does not start; no work stealing
        # (the coordinator sends only as many notebooks as there are slots); Dask's
        # 20 ms and 100 ms timers at 1 s (idle, the cluster used 0.92 s of CPU in 20 s,
        # now 0.13 s). The workers are forked from a server process that has imported
        # the grading modules (spawned, each imported them itself).
        with dask.config.set({"distributed.worker.profile.enabled": False,
                              "distributed.admin.system-monitor.interval": "1h",
                              "distributed.scheduler.work-stealing": False,
                              "distributed.admin.tick.interval": "1s",
                              "distributed.worker.memory.monitor-interval": "1s",
                              "distributed.worker.multiprocessing-method": _FORKSERVER}):
            _preload_forkserver()
            return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                resources={RESOURCE: 1}, dashboard_address=None,
                                silence_logs=logging.ERROR)

    @property
    def address(self) -> str:
        return self._cluster.result().scheduler_address

    def close(self) -> None:
        """Stop the cluster (once it has started; if it could not start, ``address``
        said why)."""
        if self._cluster.exception() is None:
            self._cluster.result().close()
        self._thread.shutdown()


def dask_cluster(jobs: list, template, address: str | None = None,
                 local: LocalDaskCluster | None = None):
    """Grade ``jobs`` on the Dask cluster at ``address``, or on the ``local`` cluster
    started for this run."""
    from distributed import Client, as_completed
    from distributed.scheduler import KilledWorker

    address = address or local.address
    with Client(address, timeout="30s") as client:
        check_workers(client, address)
        run = uuid.uuid4().hex[:8]  # keys of this run only, on a cluster others may share
        # each task carries the template gradebook (a few hundred KB, and only as many
        # tasks as slots are sent at once): a task that depended on a shared copy would
        # be placed on the worker holding it, busy or not, and wait there
        # only as many tasks in flight as there are grading slots: a task waiting on a
        # worker would be counted as a suspect when that worker dies, and an innocent
        # notebook could end with KilledWorker next to a poison one
        pending, in_flight = list(jobs), {}
        finished = as_completed()

        def submit_more() -> None:
            while pending and len(in_flight) < max(1, grading_slots(client)):
                job = pending.pop(0)
                fut = client.submit(worker.grade, job, template, key=f"grade {job.key} {run}",
                                    resources={RESOURCE: 1}, retries=RETRIES)
                in_flight[fut] = job
                finished.add(fut)

        submit_more()
        for fut in finished:
            job = in_flight.pop(fut)
            submit_more()  # its slot is free: the next notebook starts while this result comes
            try:
                outcome = fut.result()
            except KilledWorker as exc:
                outcome = WorkerLost(
                    f"KilledWorker: the Dask worker grading this notebook died "
                    f"{exc.allowed_failures + 1} times, on different workers")
            except Exception as exc:  # noqa: BLE001 - the grader's failure, retried already
                outcome = exc
            fut.release()
            yield job, outcome
