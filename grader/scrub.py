"""Neutral names for the grading machine's folders in what students read.

A traceback in a feedback page would otherwise show where the instructor keeps the
course, the venv and the temporary folders (user names, folder layout). Every page a
student receives passes through ``scrub_paths``: each known folder becomes a short
label, the rest of the path is kept so a traceback still says which file and line::

    /home/ta/bptt/.venv/lib/python3.11/site-packages/numpy/linalg/linalg.py:12
    [site-packages]/numpy/linalg/linalg.py:12
"""
from __future__ import annotations

import os
import re
import site
import sys
import sysconfig
import tempfile

from . import nbapi


def machine_folders(course_root: str = "") -> dict[str, str]:
    """{absolute folder: label} for the folders a traceback can reveal (each also under
    its resolved name, in case it is reached through a symlink)."""
    named = [(p, "[site-packages]") for p in site.getsitepackages()]
    named += [(sysconfig.get_paths()["purelib"], "[site-packages]"),
              (sys.prefix, "[venv]"), (sys.base_prefix, "[python]"),
              (course_root, "[course]"), (str(nbapi.REPO_ROOT), "[course]"),
              (tempfile.gettempdir(), "[tmp]"),
              (os.environ.get("XDG_RUNTIME_DIR", ""), "[run]"),
              (os.path.expanduser("~"), "~")]
    out: dict[str, str] = {}
    for path, label in named:
        if not path or os.path.dirname(path) == path:  # never the file system's root
            continue
        for variant in (os.path.abspath(path), os.path.realpath(path)):
            out.setdefault(variant, label)
    return out


def scrub_paths(text: str, course_root: str = "") -> str:
    """``text`` with every machine folder (``machine_folders``) replaced by its label;
    the longest folder wins, and a folder matches only as a whole path component."""
    folders = machine_folders(course_root)
    pattern = re.compile(r"(?:(?<=file://)|(?<![\w.~/-]))(" + "|".join(
        re.escape(p) for p in sorted(folders, key=len, reverse=True)) + r")(?![\w.-])")
    return pattern.sub(lambda m: folders[m.group(1)], text)
