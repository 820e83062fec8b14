"""``python -m grader check NOTEBOOK``: the student's self-check.

Runs the notebook top to bottom in a fresh kernel (its own folder as working
directory), then prints one line per tested function: PASS, or FAIL with the
diagnosis the test printed (the mistake it looks like, or what is wrong and where to
read). Exit status 0 only if every visible test passes (``nbgrader validate`` exits 0
even when tests fail)."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _text(out) -> str:
    if out.get("output_type") == "stream":
        return out.get("text", "")
    if out.get("output_type") == "error":
        return f"{out.get('ename')}: {out.get('evalue')}"
    data = out.get("data", {})
    return data.get("text/plain", "")


def run(notebook: str | os.PathLike, timeout: int = 120, out=sys.stdout) -> int:
    import nbformat
    from nbclient import NotebookClient

    path = Path(notebook)
    if not path.is_file():
        print(f"no such notebook: {path}", file=out)
        return 2
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - corrupt file: say so, don't trace back
        print(f"{path} is not a readable notebook: {exc}", file=out)
        return 2
    env_backup = {k: os.environ.pop(k) for k in ("COURSE_RECORD_DIR", "COURSE_CASES_DIR",
                                                 "NBGRADER_EXECUTION") if k in os.environ}
    import tempfile

    from jupyter_client.manager import AsyncKernelManager

    try:
        with tempfile.TemporaryDirectory(prefix="bptt-check-") as sockets:
            # ipc sockets: local only, and no "running over TCP" warning from the kernel
            km = AsyncKernelManager(kernel_name="python3", transport="ipc",
                                    ip=os.path.join(sockets, "kernel"))
            client = NotebookClient(nb, km=km, timeout=timeout, allow_errors=True,
                                    resources={"metadata": {"path": str(path.parent.resolve())}})
            client.execute()
    finally:
        os.environ.update(env_backup)
    failures = 0
    tested = 0
    print(f"Self-check of {path.name} (visible tests only; hidden tests run when graded)",
          file=out)
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code":
            continue
        grade_id = meta.get("grade_id", "")
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if meta.get("grade") and not meta.get("solution"):
            tested += 1
            name = grade_id[5:] if grade_id.startswith("test_") else grade_id
            pts = meta.get("points", 0)
            pts = f"{pts:g} point{'' if pts == 1 else 's'}"
            if errors:
                failures += 1
                msg = _ANSI.sub("", _text(errors[0])).strip()
                print(f"  FAIL  {name} ({pts}): {msg}", file=out)
            else:
                print(f"  PASS  {name} ({pts})", file=out)
        elif errors and not meta.get("solution"):
            msg = _ANSI.sub("", _text(errors[0])).strip().splitlines()[0][:300]
            print(f"  note: a cell failed before the tests: {msg}", file=out)
    manual = sum(1 for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")
                 and c.get("metadata", {}).get("nbgrader", {}).get("solution"))
    if manual:
        print(f"  ({manual} written answer(s) are graded by your instructor)", file=out)
    if not tested:
        print("  no tests found in this notebook", file=out)
        return 1
    print(f"{tested - failures} of {tested} tests pass.", file=out)
    return 1 if failures else 0
