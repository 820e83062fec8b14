"""Per-run private temporary folders, so several instructors can grade on one machine.

``python -m grader grade`` makes one folder (``tempfile.mkdtemp``: mode 0700, a fresh
name) and hands it to its workers as ``COURSE_RUN_DIR``; anything else that grades
(a test, a single nbgrader call, a worker of a Dask cluster) gets one per process,
removed at exit. Cases, records, kernel run dirs and the generated course_lib view all
live inside it: no fixed name in the system temporary folder, nothing another user can
see or pre-create.

A run that is killed (SIGKILL, a Dask worker stopped by its nanny) cannot remove its
folder, so each folder holds a lock file that its run keeps locked while it lives
(``flock``: the kernel drops the lock when the last process holding it ends, however it
ends). Making a new folder first removes this user's folders whose lock nobody holds.

A folder is removed together with the processes that still name it on their command
line: a kernel's sandbox (bubblewrap) asks to die with the worker that started it
(``--die-with-parent``), but a worker killed in the moment before bubblewrap asks leaves
the sandbox and its kernel running, with no parent, for ever.
"""
from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import signal
import stat
import tempfile

PREFIX = "bptt-grading-"
LOCK = ".run.lock"
_OWN: list[str] = []
_LOCKS: dict[str, int] = {}  # run folder -> the open, locked descriptor of its lock file


def make_run_root() -> str:
    """A fresh private folder for one grading run, locked by this process until
    ``remove_run_root`` (which the caller calls) or until it ends."""
    remove_abandoned()
    path = tempfile.mkdtemp(prefix=PREFIX)
    fd = os.open(os.path.join(path, LOCK), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _LOCKS[path] = fd
    return path


def remove_run_root(path: str) -> None:
    """End the processes left in a run folder, remove it, and let go of its lock if this
    process holds it (a folder of ``make_run_root``'s, or one abandoned by its run)."""
    kill_processes_naming(path)
    remove_tree(path)
    fd = _LOCKS.pop(path, None)
    if fd is not None:
        os.close(fd)


def remove_abandoned() -> list[str]:
    """Remove this user's run folders whose run has ended without removing them (their
    lock can be taken); returns their paths. A folder without a lock file is one being
    made this moment, or not ours to judge: it is left alone."""
    removed = []
    with os.scandir(tempfile.gettempdir()) as entries:
        for entry in entries:
            if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            if entry.stat(follow_symlinks=False).st_uid != os.geteuid():
                continue
            try:
                fd = os.open(os.path.join(entry.path, LOCK), os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its run is alive
            else:
                remove_run_root(entry.path)
                removed.append(entry.path)
            finally:
                os.close(fd)
    return removed


def kill_processes_naming(folder: str) -> None:
    """SIGKILL every process (that this user may signal) whose command line names a path
    inside ``folder``. The folder's name is random and private to one run, so nothing
    else names it."""
    inside = os.fsencode(os.path.join(folder, ""))
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:  # no /proc: no sandbox either
        return
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if inside in fh.read():
                    os.kill(pid, signal.SIGKILL)
        except OSError:  # gone, or not ours to read or signal
            pass


def run_root() -> str:
    """This run's private folder: ``COURSE_RUN_DIR`` if set (checked: a real folder of
    ours that nobody else may enter), else one made for this process."""
    path = os.environ.get("COURSE_RUN_DIR")
    if path:
        st = os.lstat(path)
        if (not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid()
                or st.st_mode & 0o077):
            raise RuntimeError(f"COURSE_RUN_DIR={path} is not a private folder of this user "
                               "(mode 0700)")
        return path
    if not _OWN:
        _OWN.append(make_run_root())
        atexit.register(remove_run_root, _OWN[0])
    return _OWN[0]


def fresh_dir(prefix: str) -> str:
    """A new folder (mode 0700) with a unique name in this run's folder."""
    return tempfile.mkdtemp(prefix=prefix, dir=run_root())


def remove_tree(path: str) -> None:
    """Remove a folder a kernel could write into: links are removed, never followed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)  # rmtree never follows symlinks
    else:
        os.unlink(path)
