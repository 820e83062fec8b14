"""The grading sandbox: student code runs in bubblewrap, with budgets.

``SandboxedExecute`` (execute.py) replaces nbgrader's Execute in
``c.Autograde.autograde_preprocessors``; its kernels are started by
``SandboxKernelManager`` (kernel.py) inside bubblewrap, as root (the kernel gets a
uid of its own) or as an ordinary user (an unprivileged user namespace). What the
kernel may import is an allowlist (views.py); the private temporary folders of a
run are in rundir.py. ``problem()`` says why no sandbox can be made here (and how
to fix it), or None.

What the kernel sees: the system's /usr and /etc, the Python install with only the
allowed distributions, the allowlisted course_lib view, its case inputs (read-only)
and its record files (the only host files it can write), a size-capped tmpfs as
working folder, HOME and /tmp. Not the course tree (solutions/, grader/, the
gradebook, the salt, other students), no network, no other process.

Budgets per notebook (see execute.py and kernel.py for the settings): wall time per
cell and per notebook, output bytes per cell and per notebook, kernel memory
(RLIMIT_AS), processes, scratch disk (tmpfs sizes, file size, the socket folder).
Error outputs the sandbox writes into cells (ename): ``CellTimeoutError``,
``KernelDied``, ``BudgetExceeded``, ``ProcessLimit``, ``NotExecuted``.

Contract for course_lib.checks in grading mode: case inputs come from
``$COURSE_CASES_DIR``; records are written in place into the files the grader
created in ``$COURSE_RECORD_DIR`` (the folder itself is read-only in the kernel).
"""
from __future__ import annotations

from .kernel import SandboxKernelClient, SandboxKernelManager, problem


def available() -> bool:
    """True when a sandbox can be made here (see ``problem()`` for why not)."""
    return problem() is None


def __getattr__(name):
    if name == "SandboxedExecute":
        from .execute import SandboxedExecute

        return SandboxedExecute
    raise AttributeError(name)


__all__ = ["SandboxedExecute", "SandboxKernelManager", "SandboxKernelClient", "available",
           "problem"]
