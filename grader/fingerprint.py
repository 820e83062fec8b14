"""What a grade depends on, as hashes: a submission's folder, and everything else.

``submission_digest`` hashes a submission folder (names, link targets, bytes; links are
never followed); ``fingerprint`` hashes everything besides the submission that decides a
grade or its feedback. The run state keeps both per submission: a submission is graded
again when either changes. A grading worker recomputes the fingerprint from its own
checkout of the course and refuses to grade when it differs from the coordinator's
(grader.worker): a worker on another machine with other grader code, another registry
or another salt would give other grades.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from . import registry

# the settings (environment variables) whose value changes grades: the time limits of a
# cell and of a notebook (nbgrader_config.py reads them; its defaults are in the hash too)
TIME_LIMITS = ("COURSE_CELL_TIMEOUT", "COURSE_NOTEBOOK_TIMEOUT")


def _hash_tree(path: Path, h) -> None:
    for root, dirs, files in os.walk(path, followlinks=False):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
            if os.path.islink(full):
                h.update(b"L" + os.readlink(full).encode("utf-8", "surrogateescape"))
            elif os.path.isfile(full):
                with open(full, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            h.update(b"\0")


def submission_digest(folder: Path) -> str:
    h = hashlib.sha256()
    _hash_tree(folder, h)
    return h.hexdigest()


def _module_files(name: str) -> list[Path]:
    """Source files of a module or package, found without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return []
    f = Path(spec.origin)
    return sorted(f.parent.rglob("*.py")) if f.name == "__init__.py" else [f]


def fingerprint_files(root: Path, assignment: str) -> list[Path]:
    """The files a grade or its feedback depends on besides the submission: grader code,
    the registry, course_lib (the judge and its tolerance live in course_lib.judging).
    The "Read:" pointers' headings and links are hashed by ``fingerprint``; the rest of
    the book is not, so fixing a typo in a chapter regrades nobody."""
    files = [root / "nbgrader_config.py", root / "solutions" / assignment / f"{assignment}.ipynb"]
    files += sorted(Path(__file__).parent.glob("*.py"))
    files += sorted((Path(__file__).parent / "sandbox").glob("*.py"))
    files += _module_files(registry.module_name())
    files += _module_files("course_lib")
    return files


def pointer_texts(assignment: str) -> list[str]:
    """Every "Read:" pointer the assignment's feedback can show: heading text and link."""
    return sorted({str(ex.section) for ex in registry.for_assignment(assignment).values()}
                  | {str(m.section) for ex in registry.for_assignment(assignment).values()
                     for m in ex.mistakes})


def fingerprint(root: Path, assignment: str) -> str:
    """Everything besides the submission that decides a grade or its feedback."""
    from .judge import grading_salt

    h = hashlib.sha256()
    for f in fingerprint_files(root, assignment):
        if f.is_file():
            h.update(str(f.name).encode() + b"\0" + f.read_bytes() + b"\0")
    for text in pointer_texts(assignment):
        h.update(text.encode() + b"\0")
    h.update(grading_salt(root).encode())
    h.update(os.environ.get("COURSE_SANDBOX", "1").encode())
    for limit in TIME_LIMITS:  # a notebook cut off at one limit may finish at another
        h.update(f"{limit}={os.environ.get(limit, '')}\0".encode())
    return h.hexdigest()
