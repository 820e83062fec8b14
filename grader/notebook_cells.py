"""The nbgrader cells of a notebook file that a student wrote (untrusted JSON)."""
from __future__ import annotations

import json
from pathlib import Path

MAX_NOTEBOOK_BYTES = 50 * 2**20


def nbgrader_cells(path: Path) -> list[dict]:
    """[{"cell_type", "source", "nbgrader"}] of the cells that carry nbgrader metadata;
    [] for a link, a file too large, or anything that is not a notebook's JSON shape."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_NOTEBOOK_BYTES:
            return []
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    cells = nb.get("cells") if isinstance(nb, dict) else None
    out = []
    for cell in cells if isinstance(cells, list) else []:
        meta = cell.get("metadata") if isinstance(cell, dict) else None
        grading = meta.get("nbgrader") if isinstance(meta, dict) else None
        source = cell.get("source", "") if isinstance(grading, dict) else None
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        if isinstance(source, str):
            out.append({"cell_type": cell.get("cell_type"), "source": source,
                        "nbgrader": grading})
    return out
