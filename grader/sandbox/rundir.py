"""Per-run private temporary folders, so several instructors can grade on one machine.

``python -m grader grade`` makes one folder (``tempfile.mkdtemp``: mode 0700, a fresh
name) and hands it to its workers as ``COURSE_RUN_DIR``; anything else that grades
(a test, a single nbgrader call) gets one per process, removed at exit. Cases,
records, kernel run dirs and the generated course_lib view all live inside it: no
fixed name in the system temporary folder, nothing another user can see or pre-create.
"""
from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile

_OWN: list[str] = []


def make_run_root() -> str:
    """A fresh private folder for one grading run (the caller removes it)."""
    return tempfile.mkdtemp(prefix="bptt-grading-")


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
        atexit.register(shutil.rmtree, _OWN[0], True)
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
