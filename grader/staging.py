"""A submission reduced to its notebook before nbgrader sees it.

nbgrader copies everything in ``grader/submitted/<student>/<assignment>/`` into its
autograded folder, following links, with the grader's rights. So nbgrader is never
handed the student's folder: ``read`` takes the notebook (and nbgrader's
``timestamp.txt``), each opened without following a link, required to be a regular
file and size-capped, and names everything else it left behind; ``write`` puts those
bytes into a fresh folder of a grading worker's private folder, where the worker's
nbgrader reads submissions from (``submitted_directory``). The coordinator reads, the
worker (maybe on another machine) writes; ``stage`` does both in one process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import notebook_cells, plain_files
from .sandbox.rundir import remove_tree

TIMESTAMP = "timestamp.txt"
MAX_NOTEBOOK_BYTES = notebook_cells.MAX_NOTEBOOK_BYTES
MAX_TIMESTAMP_BYTES = 256


class StagingError(ValueError):
    """The submission's notebook cannot be copied safely (the message says why)."""


@dataclass
class Submission:
    """What is graded of one submission folder: the notebook's bytes, the text of
    timestamp.txt (None: no usable one) and the names of everything else (ignored)."""

    notebook: bytes
    timestamp: str | None = None
    ignored: list[str] = field(default_factory=list)


def _read_regular(src_dir_fd: int, name: str, max_bytes: int) -> bytes:
    """``name`` in the open folder ``src_dir_fd`` as ``plain_files.read`` reads it: no
    link, a regular file, at most ``max_bytes``."""
    try:
        return plain_files.read(src_dir_fd, name, max_bytes)
    except plain_files.NotPlainFile as exc:
        raise StagingError(str(exc)) from None


def read(submitted: Path, student: str, assignment: str) -> Submission:
    """The notebook (and timestamp) of ``submitted/<student>/<assignment>/``. Raises
    StagingError if the notebook cannot be read safely."""
    try:
        dir_fd = os.open(submitted / student / assignment,
                         os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise StagingError(f"the submission folder cannot be opened ({exc.strerror})") from None
    try:
        notebook = f"{assignment}.ipynb"
        sub = Submission(_read_regular(dir_fd, notebook, MAX_NOTEBOOK_BYTES))
        names = sorted(os.listdir(dir_fd))
        if TIMESTAMP in names:
            try:
                sub.timestamp = _read_regular(dir_fd, TIMESTAMP, MAX_TIMESTAMP_BYTES).decode(
                    "utf-8", "replace")
            except StagingError:
                pass  # a timestamp that is not a small plain file is ignored like the rest
            else:
                names.remove(TIMESTAMP)
    finally:
        os.close(dir_fd)
    sub.ignored = [n for n in names if n != notebook]
    return sub


def _write_new(path: Path, data: bytes) -> None:
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(out, "wb") as fh:
        fh.write(data)


def write(staged_root: Path, student: str, assignment: str, sub: Submission) -> None:
    """Put ``sub`` into a fresh ``staged_root/<student>/<assignment>/`` (any previous
    copy of that student is removed first)."""
    remove_tree(str(staged_root / student))
    dest = staged_root / student / assignment
    dest.mkdir(parents=True, mode=0o700)
    _write_new(dest / f"{assignment}.ipynb", sub.notebook)
    if sub.timestamp is not None:
        _write_new(dest / TIMESTAMP, sub.timestamp.encode("utf-8"))


def stage(submitted: Path, staged_root: Path, student: str, assignment: str) -> list[str]:
    """Copy ``submitted/<student>/<assignment>/<assignment>.ipynb`` (and timestamp.txt)
    to ``staged_root/<student>/<assignment>/``; returns the names of everything else in
    the submission folder, which is ignored. Raises StagingError if the notebook cannot
    be copied safely."""
    sub = read(submitted, student, assignment)
    write(staged_root, student, assignment, sub)
    return sub.ignored
