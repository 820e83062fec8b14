"""Files the grader writes for others to read: grades.csv, the run state, the intake
record, verdicts, exports, the similarity results and cache.

``replace_text`` writes the new text beside the file under a fresh name, then renames it
over the file: a reader (a run beside this one, the next run after a crash, an
instructor's spreadsheet) finds the old file or the new one, never half of one.
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def replace_text(path: Path | str, text: str) -> None:
    """Replace ``path`` by a file holding ``text``, written as it is (UTF-8, line
    endings untouched, so a CSV keeps its ``\\r\\n``); makes the folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own (two runs may write one file at once), created, never reused;
    # mode 0666 less the umask, as a plain open() would give
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
