"""A submission reduced to its notebook before nbgrader sees it.

nbgrader copies everything in ``grader/submitted/<student>/<assignment>/`` into its
autograded folder, following links, with the grader's rights. So a worker never hands it
the student's folder: ``stage`` copies the notebook (and nbgrader's ``timestamp.txt``),
each opened without following a link, required to be a regular file and size-capped,
into a fresh folder of this run's private folder, and names everything else it left
behind. The worker's nbgrader reads submissions from there (``submitted_directory``).
"""
from __future__ import annotations

import os
from pathlib import Path

from . import notebook_cells, plain_files
from .sandbox.rundir import remove_tree

TIMESTAMP = "timestamp.txt"
MAX_NOTEBOOK_BYTES = notebook_cells.MAX_NOTEBOOK_BYTES
MAX_TIMESTAMP_BYTES = 256


class StagingError(ValueError):
    """The submission's notebook cannot be copied safely (the message says why)."""


def _copy_regular(src_dir_fd: int, name: str, dest: Path, max_bytes: int) -> None:
    """Copy ``name`` from the open folder ``src_dir_fd`` to ``dest`` (read as
    ``plain_files.read`` reads: no link, a regular file, at most ``max_bytes``)."""
    try:
        data = plain_files.read(src_dir_fd, name, max_bytes)
    except plain_files.NotPlainFile as exc:
        raise StagingError(str(exc)) from None
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(out, "wb") as fh:
        fh.write(data)


def stage(submitted: Path, staged_root: Path, student: str, assignment: str) -> list[str]:
    """Copy ``submitted/<student>/<assignment>/<assignment>.ipynb`` (and timestamp.txt)
    to ``staged_root/<student>/<assignment>/``; returns the names of everything else in
    the submission folder, which is ignored. Raises StagingError if the notebook cannot
    be copied safely."""
    remove_tree(str(staged_root / student))
    dest = staged_root / student / assignment
    dest.mkdir(parents=True, mode=0o700)
    try:
        dir_fd = os.open(submitted / student / assignment,
                         os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise StagingError(f"the submission folder cannot be opened ({exc.strerror})") from None
    try:
        notebook = f"{assignment}.ipynb"
        _copy_regular(dir_fd, notebook, dest / notebook, MAX_NOTEBOOK_BYTES)
        names = sorted(os.listdir(dir_fd))
        if TIMESTAMP in names:
            try:
                _copy_regular(dir_fd, TIMESTAMP, dest / TIMESTAMP, MAX_TIMESTAMP_BYTES)
            except StagingError:
                pass  # a timestamp that is not a small plain file is ignored like the rest
            else:
                names.remove(TIMESTAMP)
    finally:
        os.close(dir_fd)
    return [n for n in names if n != notebook]
