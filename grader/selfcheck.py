"""``python -m grader check NOTEBOOK``: the student's self-check, on the grader's path.

The same steps as grading, visible cases only: the locked cells (imports, tests) are
restored from the released notebook (an edited or deleted test cell is checked as
released), ``grader.cells.prepare`` writes the cases and tags the test cells, the
notebook runs top to bottom in a fresh kernel (its own folder as working directory),
and ``grader.cells.decide`` judges the records exactly as the grader does. Then one
line per tested function: PASS, or FAIL with the verdict (the mistake it looks like,
or what is wrong and where to read); an answer cell that fails (a SyntaxError, with
its line) is named. Exit status 0 only if every visible test passes
(``nbgrader validate`` exits 0 even when tests fail)."""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from . import cells, nbapi, registry

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CHECK_CALL = re.compile(r"""check\(\s*["']([0-9]{2}_[a-z_]+)["']""")


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def assignment_of(nb, path: Path) -> str | None:
    """The assignment a notebook belongs to: its file name, else its test cells."""
    known = {a for a, _ in registry.exercises()}
    if path.stem in known:
        return path.stem
    for cell in nb.cells:
        m = _CHECK_CALL.search(cell.get("source", ""))
        if m and m.group(1) in known:
            return m.group(1)
    return None


def restore_locked_cells(nb, released, say) -> None:
    """Put back the released source of every locked cell, and any deleted test cell."""
    if released is None:
        return
    by_id = {_meta(c).get("grade_id"): c for c in nb.cells if _meta(c).get("grade_id")}
    for i, original in enumerate(released.cells):
        meta = _meta(original)
        gid = meta.get("grade_id")
        if not meta.get("locked") or meta.get("solution"):
            continue
        mine = by_id.get(gid)
        if mine is None:
            if original.cell_type == "code" and meta.get("grade"):
                say(f"  note: the test cell {gid} was missing; checked with the released one")
                answer = next((j for j, c in enumerate(nb.cells)
                               if _meta(c).get("grade_id") == gid[len("test_"):]), None)
                nb.cells.insert(len(nb.cells) if answer is None else answer + 1,
                                copy.deepcopy(original))
            continue
        if mine.source != original.source:
            if original.cell_type == "code":
                say(f"  note: the locked cell {gid} was edited; checked with the released one "
                    "(the grader restores it too)")
            mine.source = original.source
            mine.metadata["nbgrader"] = copy.deepcopy(meta)


def _released(assignment: str):
    import nbformat

    path = nbapi.REPO_ROOT / "exercises" / assignment / f"{assignment}.ipynb"
    return nbformat.read(path, as_version=4) if path.is_file() else None


def run_in_kernel(nb, folder: Path, timeout: int) -> None:
    """Run ``nb`` top to bottom in a fresh kernel whose working directory is ``folder``;
    a cell that raises keeps its error output and the next cells still run."""
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory(prefix="bptt-check-") as tmp:
        # ipc sockets: local only, and no "running over TCP" warning from the kernel
        km = AsyncKernelManager(kernel_name="python3", transport="ipc",
                                ip=os.path.join(tmp, "kernel"))
        # the kernel's own log lines ("Parent appears to have exited") are noise here
        NotebookClient(nb, km=km, timeout=timeout, allow_errors=True,
                       resources={"metadata": {"path": str(folder)}}
                       ).execute(stderr=subprocess.DEVNULL)


def run(notebook: str | os.PathLike, timeout: int = 120, out=sys.stdout,
        execute=run_in_kernel) -> int:
    """Self-check ``notebook``, print one line per test, return the exit status.
    ``execute(nb, folder, timeout)`` runs the prepared notebook (the tests give a
    stand-in that runs the cells without a kernel)."""
    import nbformat

    def say(text):
        print(text, file=out)

    path = Path(notebook)
    if not path.is_file():
        say(f"no such notebook: {path}")
        return 2
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - corrupt file: say so, don't trace back
        say(f"{path} is not a readable notebook: {exc}")
        return 2
    assignment = assignment_of(nb, path)
    if assignment is None:
        say(f"{path.name} is not one of the course's assignments (no known test cells)")
        return 2
    say(f"Self-check of {path.name} (visible tests only; hidden tests run when graded)")
    restore_locked_cells(nb, _released(assignment), say)
    exercises = registry.for_assignment(assignment)
    saved = {k: os.environ.pop(k) for k in ("COURSE_RECORD_DIR", "COURSE_CASES_DIR",
                                            "COURSE_ASSIGNMENT", "NBGRADER_EXECUTION")
             if k in os.environ}
    info = cells.prepare(nb, assignment, exercises, seed=0, student="self-check")
    os.environ.update(info["env"])
    try:
        execute(nb, path.parent.resolve(), timeout)
        verdicts = cells.decide(nb, info, exercises, hidden=False)
    finally:
        for k in info["env"]:
            os.environ.pop(k, None)
        os.environ.update(saved)
        cells.cleanup(info)
    return report(nb, verdicts, say)


def report(nb, verdicts: list[dict], say) -> int:
    by_id = {v["grade_id"]: v for v in verdicts}
    failures = 0
    for cell in nb.cells:
        meta = _meta(cell)
        if cell.cell_type != "code":
            continue
        gid = meta.get("grade_id", "")
        if gid in by_id:
            v = by_id[gid]
            pts = f"{v['points']:g} point{'' if v['points'] == 1 else 's'}"
            if v["passed"]:
                say(f"  PASS  {v['name']} ({pts})")
            else:
                failures += 1
                say(f"  FAIL  {v['name']} ({pts}): {_ANSI.sub('', v['message']).strip()}")
        elif not (meta.get("grade") and meta.get("solution")):
            error = cells.cell_error(cell)
            if error:
                where = f"your answer cell {gid}" if meta.get("solution") else "a cell"
                say(f"  note: {where} failed: {_ANSI.sub('', error).splitlines()[0][:300]}")
    manual = sum(1 for c in nb.cells if _meta(c).get("grade") and _meta(c).get("solution"))
    if manual:
        say(f"  ({manual} written answer(s) are graded by your instructor)")
    if not verdicts:
        say("  no tests found in this notebook")
        return 1
    say(f"{len(verdicts) - failures} of {len(verdicts)} tests pass.")
    return 1 if failures else 0
