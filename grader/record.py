"""The one writer of grades: a grading result goes into the course here, nowhere else.

Workers (grader.worker) grade in private folders and return plain results; the
coordinator (grader.pipeline) hands each result to ``apply``, which

1. writes the gradebook in ONE transaction per submission, through nbgrader's ORM (the
   same code on SQLite and PostgreSQL): the student and the submission (with its
   timestamp) are created if new, each grade cell gets the worker's ``auto_score`` and
   ``needs_manual_grade`` by nbgrader's own rule (``needs_manual_grade``), each answer
   cell its ``auto_comment``; manual scores and comments are never touched;
2. writes the three files, each atomically (a temporary file, then ``os.replace``) in
   folders the grader creates, never through a link: grader/feedback/<s>/<a>/<a>.html,
   grader/autograded/<s>/<a>/<a>.ipynb, grader/verdicts/<s>/<a>.json (a file the result
   does not have is removed, with its submission's folder, so nothing stale is shown);
3. updates the run state's entry of the submission (the caller saves the state file).

Applying the same result twice leaves the same gradebook, files and state. Two workers
never write the gradebook, so two assignments of one student graded at the same moment
cannot race to create the student.
"""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from . import inert


class RecordError(RuntimeError):
    """A result cannot be written safely (a link where the grader writes, ...)."""


def needs_manual_grade(auto_score, manual_score) -> bool:
    """nbgrader's SaveAutoGrades rule: a cell needs a look by hand when a grader gave it
    a manual score before, or when the autograder could not score it."""
    return manual_score is not None or auto_score is None


def manual_marks(gb, assignment: str, student: str) -> dict:
    """The manual marks of a submission (``Job.marks``): {"scores": {(notebook, cell):
    score}, "comments": {(notebook, cell): text}}; {} when there are none."""
    from nbgrader.api import MissingEntry

    try:
        sub = gb.find_submission(assignment, student)
    except MissingEntry:
        return {}
    scores = {(nb.name, g.name): g.manual_score for nb in sub.notebooks for g in nb.grades
              if g.manual_score is not None}
    comments = {(nb.name, c.name): c.manual_comment for nb in sub.notebooks
                for c in nb.comments if c.manual_comment}
    return {"scores": scores, "comments": comments} if scores or comments else {}


# ---------------------------------------------------------------------------- gradebook
def _submission(gb, assignment: str, student: str):
    """The submission's row, with the student and every notebook, grade and comment row
    made if new (as nbgrader's add_submission does, without its commits)."""
    from nbgrader.api import (Comment, Grade, MissingEntry, Student, SubmittedAssignment,
                              SubmittedNotebook)

    db = gb.db
    person = db.get(Student, student)
    if person is None:
        person = Student(id=student)
        db.add(person)
    try:
        return gb.find_submission(assignment, student)
    except MissingEntry:
        pass
    with db.no_autoflush:  # the rows are complete only once all are made
        sub = SubmittedAssignment(assignment=gb.find_assignment(assignment), student=person)
        for notebook in sub.assignment.notebooks:
            nb = SubmittedNotebook(notebook=notebook, assignment=sub)
            for cell in notebook.grade_cells:
                Grade(cell=cell, notebook=nb)
            for cell in notebook.solution_cells:
                Comment(cell=cell, notebook=nb)
            for cell in notebook.task_cells:
                Comment(cell=cell, notebook=nb)
                Grade(cell=cell, notebook=nb)
        db.add(sub)
    return sub


def write_gradebook(gb, result: dict) -> None:
    """The result's grades in one transaction (see the module doc). A result that was
    not graded clears the automatic scores, so no earlier grade stands for it."""
    from nbgrader import utils

    try:
        sub = _submission(gb, result["assignment"], result["student"])
        if result["timestamp"]:
            sub.timestamp = utils.parse_utc(result["timestamp"])
        notebooks = result["notebooks"] or {}
        for nb in sub.notebooks:
            mine = notebooks.get(nb.name, {})
            grades, comments = mine.get("grades", {}), mine.get("comments", {})
            nb.late_submission_penalty = mine.get("late_submission_penalty")
            for grade in nb.grades:
                grade.auto_score = grades.get(grade.name, {}).get("auto_score")
                grade.needs_manual_grade = needs_manual_grade(grade.auto_score,
                                                              grade.manual_score)
            for comment in nb.comments:
                comment.auto_comment = comments.get(comment.name)
        gb.db.commit()
    except BaseException:
        gb.db.rollback()
        raise


# ---------------------------------------------------------------------------- files
def _folder(base: Path, parts: list[str], create: bool = True) -> int | None:
    """An open descriptor of ``base/parts...``, each part opened without following a
    link and created (mode 0755) if missing; None if one is missing and not ``create``."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if create:
                    raise
                os.close(fd)
                return None
            except OSError as exc:
                raise RecordError(f"{base.joinpath(*parts)}: {part} is not a folder of the "
                                  f"grader ({exc.strerror}); remove it and grade again") from None
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def remove(base: Path, parts: list[str], name: str) -> None:
    """Remove ``base/parts.../name`` (a file or a whole folder), never through a link."""
    fd = _folder(base, parts, create=False)
    if fd is None:
        return
    try:
        if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
            shutil.rmtree(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


def write_file(base: Path, parts: list[str], name: str, data: bytes) -> None:
    """``base/parts.../name`` holds ``data``, replaced atomically; a link in its place
    is replaced, never followed."""
    fd = _folder(base, parts)
    try:
        tmp = f".{name}.tmp"
        try:
            os.unlink(tmp, dir_fd=fd)
        except FileNotFoundError:
            pass
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644,
                      dir_fd=fd)
        with os.fdopen(out, "wb") as fh:
            fh.write(data)
        os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)


def write_files(root: Path, result: dict) -> None:
    """The feedback page, the autograded notebook and the verdict of a result; one the
    result does not have is removed (with its submission folder, for the first two)."""
    s, a, files = result["student"], result["assignment"], result["files"]
    grader = root / "grader"
    for folder, name in (("feedback", f"{a}.html"), ("autograded", f"{a}.ipynb")):
        if files[folder] is None:
            remove(grader, [folder, s], a)
            continue
        write_file(grader, [folder, s, a], name, files[folder])
        # only the grader's file is served from these folders (see inert.keep_only_pages)
        inert.keep_only_pages(grader / folder / s / a, [name])
    if files["verdict"] is None:
        remove(grader, ["verdicts", s], f"{a}.json")
    else:
        write_file(grader, ["verdicts", s], f"{a}.json", files["verdict"])


# ---------------------------------------------------------------------------- all
def state_entry(result: dict, retry: bool = False) -> dict:
    """The run state's entry of a result; ``retry`` records no digest, so the next run
    grades the submission again."""
    return {"digest": None if retry else result["digest"],
            "fingerprint": result["fingerprint"], "status": result["status"],
            "reason": result["reason"], "seconds": round(result["seconds"], 2),
            # when a worker started and finished it (Unix time): how the turns interleaved
            "ran": [round(t, 3) for t in result.get("ran", ())],
            "sandboxed": result["sandboxed"]}


def apply(root: Path, gb, result: dict, state: dict, retry: bool = False) -> None:
    """Gradebook, then files, then the run state (see the module doc)."""
    write_gradebook(gb, result)
    write_files(root, result)
    key = f"{result['student']}/{result['assignment']}"
    state.setdefault("submissions", {})[key] = state_entry(result, retry)
