"""Where grading tasks run: a local process pool, or a Dask cluster.

A runner takes the jobs and the template gradebook and yields ``(job, outcome)`` pairs
in the order they finish; the outcome is the task's result (a dict, see
``grader.worker.grade``), ``WorkerLost`` when the worker process died while grading the
notebook every time it was tried, or the exception the grader raised on every try
(``RETRIES`` more tries after the first). The coordinator (grader.pipeline) applies
what comes out; runners write nothing.

* ``local_pool``: N worker processes on this machine (``python -m grader grade -j N``).
  A worker that dies breaks the whole pool: a fresh pool retries what was unfinished.
* ``dask_cluster``: workers of a Dask distributed cluster, an existing one
  (``--cluster tcp://HOST:8786``: ``dask scheduler`` and ``dask worker`` started on each
  machine, or ``SSHCluster``, dask-jobqueue, dask-kubernetes) or a ``LocalCluster``
  started for the run (``--local-cluster N``). Each task needs one unit of the workers'
  ``grading`` resource, and every worker offers one: a worker grades one notebook at a
  time whatever its thread count. A task whose worker dies is rerun elsewhere by the
  scheduler (so it can run twice; only its result counts); after
  ``distributed.scheduler.allowed-failures`` deaths it ends with ``KilledWorker``.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import uuid
from concurrent.futures.process import BrokenProcessPool

from . import worker

RETRIES = 2  # more tries of a task whose grader code raised (another worker may do)
RESOURCE = "grading"
START_WORKERS = ("dask worker {address} --nworkers 1 --nthreads 1 "
                 f"--resources {RESOURCE}=1")


class WorkerLost(RuntimeError):
    """The worker process died while grading this notebook, on every try."""


# ---------------------------------------------------------------------------- local
def _pool_init(env: dict) -> None:
    os.environ.update(env)


def local_pool(jobs: list, template, n_workers: int):
    """Grade ``jobs`` on ``n_workers`` processes of this machine (spawned, so each starts
    clean and inherits this process's course settings)."""
    env = {k: v for k, v in os.environ.items()
           if k.startswith(("COURSE_", "PATH", "PYTHON", "MPL", "BPTT_"))}
    ctx = multiprocessing.get_context("spawn")
    tries: collections.Counter = collections.Counter()
    pending = list(jobs)
    while pending:
        with cf.ProcessPoolExecutor(min(n_workers, len(pending)), mp_context=ctx,
                                    initializer=_pool_init, initargs=(env,)) as pool:
            futures = {pool.submit(worker.grade, job, template): job for job in pending}
            pending = []
            for fut in cf.as_completed(futures):
                job = futures[fut]
                try:
                    yield job, fut.result()
                    continue
                except BrokenProcessPool:
                    # every unfinished task of the pool gets this, not only the culprit's
                    tries[job.key] += 1
                    failure = WorkerLost(
                        f"the grading worker process died while grading this notebook "
                        f"{tries[job.key]} times")
                    retry = tries[job.key] < 2
                except Exception as exc:  # noqa: BLE001 - the grader's failure
                    tries[job.key] += 1
                    failure, retry = exc, tries[job.key] <= RETRIES
                if retry:
                    pending.append(job)
                else:
                    yield job, failure


# ---------------------------------------------------------------------------- Dask
def check_workers(client, address: str) -> None:
    """Stop with a clear message when no worker of the cluster can take a task."""
    from .pipeline import GradingError

    try:
        client.wait_for_workers(1, timeout=60)
    except TimeoutError:
        raise GradingError(f"no Dask worker joined the scheduler at {address} within 60 s: "
                           f"start some with `{START_WORKERS.format(address=address)}`") from None
    offers = [w.get("resources", {}).get(RESOURCE, 0)
              for w in client.scheduler_info(n_workers=-1)["workers"].values()]
    if not any(offers):
        raise GradingError(f"no worker of the Dask cluster at {address} offers the "
                           f"'{RESOURCE}' resource, so none would grade: start the workers "
                           f"with `{START_WORKERS.format(address=address)}`")


def dask_cluster(jobs: list, template, address: str | None = None,
                 local_workers: int | None = None):
    """Grade ``jobs`` on the Dask cluster at ``address``, or on a LocalCluster of
    ``local_workers`` worker processes (one thread each) started for this run."""
    import logging

    from distributed import Client, LocalCluster, as_completed
    from distributed.scheduler import KilledWorker

    with contextlib.ExitStack() as stack:
        if address:
            client = stack.enter_context(Client(address, timeout="30s"))
        else:
            cluster = stack.enter_context(LocalCluster(
                n_workers=local_workers, threads_per_worker=1, processes=True,
                resources={RESOURCE: 1}, dashboard_address=None,
                silence_logs=logging.ERROR))
            client = stack.enter_context(Client(cluster))
            address = cluster.scheduler_address
        check_workers(client, address)
        run = uuid.uuid4().hex[:8]  # keys of this run only, on a cluster others may share
        # the template goes to the scheduler once, as a task the graders depend on: a
        # worker fetches it from another, and if every worker holding it dies (a poison
        # notebook can take down each in turn) it is made again, which scattered data
        # would not be
        shared = client.submit(worker.Template, template.digest, template.data,
                               key=f"template {run}")
        futures = {client.submit(worker.grade, job, shared, key=f"grade {job.key} {run}",
                                 resources={RESOURCE: 1}, retries=RETRIES): job
                   for job in jobs}
        for fut in as_completed(futures):
            job = futures[fut]
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
