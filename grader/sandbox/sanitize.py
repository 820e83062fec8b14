"""RestoreCellMetadata: a sanitize step that makes edited nbgrader metadata harmless.

nbgrader 0.9.6 trusts a submission's cell metadata more than it should:

* a test cell whose ``grade_id`` was changed: OverwriteCells deletes the unknown id
  but leaves ``grade: true``, then ``add_missing_cells`` crashes with
  ``KeyError: 'grade_id'`` and the whole notebook is dropped ("not graded");
* an answer cell re-flagged as a grade cell with points: OverwriteCells looks it up as
  a graded cell, fails, and the notebook is dropped too.

This step runs before OverwriteCells (``c.Autograde.sanitize_preprocessors``) and
rewrites every cell's nbgrader metadata from the gradebook's copy of the source
notebook: a known grade_id gets exactly the source's flags and points; a cell with an
unknown or malformed grade_id loses its nbgrader metadata (it becomes a plain cell,
and the real cell it replaced is re-added by ``OverwriteCells.add_missing_cells``).
Cell sources are left to OverwriteCells (locked cells) as before.
"""
from __future__ import annotations

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor


class RestoreCellMetadata(NbGraderPreprocessor):
    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            try:
                source = gb.find_notebook(info["notebook"], info["assignment"])
            except MissingEntry:
                return nb, resources
            known = {c.name: c for c in source.source_cells}
            graded = {c.name: c for c in source.grade_cells}
            tasks = {c.name: c for c in getattr(source, "task_cells", [])}
            solutions = {c.name for c in source.solution_cells}
            for cell in nb.cells:
                md = cell.get("metadata", {}).get("nbgrader")
                if md is None:
                    continue
                gid = md.get("grade_id") if isinstance(md, dict) else None
                if not isinstance(gid, str) or gid not in known:
                    self.log.warning("cell with unknown grade_id %r: nbgrader metadata removed",
                                     gid)
                    del cell.metadata["nbgrader"]
                    continue
                new = {"grade_id": gid, "schema_version": 3,
                       "grade": gid in graded, "solution": gid in solutions,
                       "locked": bool(known[gid].locked), "task": gid in tasks}
                if gid in graded:
                    new["points"] = float(graded[gid].max_score)
                elif gid in tasks:
                    new["points"] = float(tasks[gid].max_score)
                if getattr(known[gid], "checksum", None):
                    new["checksum"] = known[gid].checksum
                if new != md:
                    self.log.warning("cell %s: nbgrader metadata restored from the source", gid)
                cell.metadata["nbgrader"] = new
        return nb, resources
