"""The grading sandbox (H7): student code runs in bubblewrap, with limits.

INTEGRATION (H6): one switch in nbgrader_config.py
=================================================

Replace nbgrader's Execute by ``SandboxedExecute`` in the autograde preprocessors
(the first entry of the default list), keep your verdict step right after it::

    from grader.sandbox import SandboxedExecute
    c.Autograde.autograde_preprocessors = [
        SandboxedExecute,            # was nbgrader.preprocessors.Execute
        <your verdict preprocessor>, # after Execute, before SaveAutoGrades
        "nbgrader.preprocessors.IgnorePattern",
        "nbgrader.preprocessors.ClearMetadataPreprocessor",
        "nbgrader.preprocessors.LimitOutput",
        "nbgrader.preprocessors.SaveAutoGrades",
        "nbgrader.preprocessors.AssignLatePenalties",
        "nbgrader.preprocessors.CheckCellMetadata",
    ]
    c.SandboxedExecute.timeout = 30            # s per cell (tests: 5-10)
    c.SandboxedExecute.notebook_timeout = 300  # s per notebook
    # optional, defaults shown:
    # c.SandboxedExecute.max_cell_output_bytes = 100_000
    # c.SandboxedExecute.sandbox = True        # False: same limits on time/output,
    #                                          # plain kernel (benchmark baseline)
    # c.SandboxKernelManager.memory_limit = 4 * 1024**3   # RLIMIT_AS
    # c.SandboxKernelManager.nproc_limit = 64
    # c.SandboxKernelManager.fsize_limit = 256 * 1024**2
    # c.SandboxKernelManager.kernel_log = ""   # a path, to debug a kernel that won't start

(``grader.sandbox.autograde_preprocessors(verdict)`` returns that list.)
Nothing else: no kernelspec to install (``SandboxKernelManager`` builds its own, with
``interrupt_mode: message`` and ipc transport; ``Execute.kernel_name`` is ignored), no
TMPDIR tricks (each kernel's connection file and sockets live in a private run dir
that is bound into that kernel's sandbox only).

What the kernel sees (everything else does not exist inside):
  /usr, /etc, the Python install and the venv (read-only); course_lib replaced by the
  reference-stub view of the assignment being graded (read-only; see stubs.py); the
  working dir nbgrader gives it (``grader/autograded/<student>/<assignment>``, read-write,
  chowned to the kernel's uid while it runs and given back afterwards);
  ``$COURSE_RECORD_DIR`` read-write and ``$COURSE_CASES_DIR`` read-only if those are set
  in the environment the kernel is started with (os.environ of the grader process, or
  ``env=`` of start_kernel); a private size-capped /tmp; HOME in its run dir.
  Not visible: solutions/, grader/ (registry, references, gradebook, submitted/, other
  students' autograded dirs, feedback), the rest of /tmp, /root, /home. No network.
Contract for course_lib.checks in grading mode: it must import nothing from ``grader``
(not visible) and find case inputs only in ``$COURSE_CASES_DIR``; records go to
``$COURSE_RECORD_DIR`` (the kernel may write anything there: open them with
O_NOFOLLOW, size caps, allow_pickle=False). Env vars passed in: COURSE_*,
NBGRADER_EXECUTION, PYTHONPATH, LANG/LC_ALL/TZ, PYTHONHASHSEED; ``COURSE_SANDBOX=1`` is
set inside.

Error outputs the sandbox writes into cells (ename): ``CellTimeoutError`` (per-cell
limit), ``KernelDied`` (os._exit, exit(), segfault...; the rest of the notebook runs in a
fresh kernel after replaying the clean cells before it), ``NotExecuted`` (notebook time
limit reached or the kernel could not be recovered: every remaining code cell gets this,
so its tests score 0 while the notebook is still graded).

Limits per kernel: a real non-root uid of its own (setpriv; RLIMIT_NPROC then bites),
RLIMIT_AS ``memory_limit`` (a memory bomb gets MemoryError), RLIMIT_FSIZE, RLIMIT_NOFILE,
no core dumps, no-new-privs, all capabilities dropped; net/pid/ipc/uts namespaces; the
kernel process's own stdout/stderr go to /dev/null.

Requires root (for setpriv to another uid and bwrap without user namespaces), bwrap
and setpriv (util-linux); ``grader.sandbox.available()`` tells.
"""
from __future__ import annotations

import os

from .kernel import SandboxKernelClient, SandboxKernelManager, bwrap_available


def available() -> bool:
    """True when the sandbox can run here (bwrap + setpriv installed, running as root)."""
    return bwrap_available() and os.geteuid() == 0


def autograde_preprocessors(verdict=None) -> list:
    """nbgrader's default autograde list with Execute replaced by SandboxedExecute and
    ``verdict`` (a preprocessor class or dotted name) inserted right after it."""
    from .execute import SandboxedExecute

    from nbgrader import preprocessors as p

    out: list = [SandboxedExecute]
    if verdict is not None:
        out.append(verdict)
    out += [p.IgnorePattern, p.ClearMetadataPreprocessor, p.LimitOutput, p.SaveAutoGrades,
            p.AssignLatePenalties, p.CheckCellMetadata]
    return out


def __getattr__(name):
    if name == "SandboxedExecute":
        from .execute import SandboxedExecute

        return SandboxedExecute
    raise AttributeError(name)


__all__ = ["SandboxedExecute", "SandboxKernelManager", "SandboxKernelClient", "available",
           "autograde_preprocessors"]
