"""Reading a file that a student's code may have planted or replaced.

Submissions and the kernel's record files are the grader's input from untrusted code:
a link where a file should be, a fifo that blocks its reader, a device, or a file far
larger than it should be. ``read`` opens without following a link and without blocking,
requires a regular file, and reads with a cap (the size the file claims is not trusted).
"""
from __future__ import annotations

import os
import stat


class NotPlainFile(ValueError):
    """The file cannot be read safely (the message says why)."""


def read(dir_fd: int, name: str, max_bytes: int) -> bytes:
    """The bytes of ``name`` in the open folder ``dir_fd``, at most ``max_bytes``;
    raises NotPlainFile if it cannot be opened as itself, is not a regular file, or is
    larger."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as exc:
        raise NotPlainFile(f"{name} cannot be opened as a plain file ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotPlainFile(f"{name} is not a regular file")
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        size = (f"{max_bytes // 2**20} MiB" if max_bytes >= 2**20 else f"{max_bytes} bytes")
        raise NotPlainFile(f"{name} is larger than {size}")
    return data
