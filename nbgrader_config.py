"""nbgrader configuration of the course (the course root is this file's folder).

    solutions/<a>/<a>.ipynb          source (instructor) notebooks
    exercises/<a>/<a>.ipynb          generated student notebooks (committed)
    grader/submitted|autograded|feedback/<student>/<a>/   nbgrader's run-time folders
    grader/gradebook.db              the gradebook (SQLite, or PostgreSQL: COURSE_DB_URL)

Grading never trusts the student's kernel: ``grader.verdict.PrepareCases`` writes the
case inputs before ``Execute``, the kernel only records what the student's functions
return, and ``grader.verdict.Verdict`` decides every test cell in this process before
``SaveAutoGrades`` stores the points. The kernel runs in the bubblewrap sandbox of
``grader.sandbox``; only ``COURSE_SANDBOX=0`` (what ``python -m grader grade
--no-sandbox`` sets) turns it off. Where no sandbox can be made, every kernel refuses
to start (and ``python -m grader grade`` refuses before grading anything).
"""
import os

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

ROOT = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.root = ROOT
c.CourseDirectory.course_id = "bptt-course"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = os.path.join("grader", "submitted")
c.CourseDirectory.autograded_directory = os.path.join("grader", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("grader", "feedback")
# or a PostgreSQL database (README, "A PostgreSQL gradebook"):
#   COURSE_DB_URL=postgresql+psycopg://user:password@host:5432/database
c.CourseDirectory.db_url = os.environ.get(
    "COURSE_DB_URL", "sqlite:///" + os.path.join(ROOT, "grader", "gradebook.db"))
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback",
                            ".*"]

# ---- releasing: exercises/ is committed, so generation must be deterministic
c.GenerateAssignment.create_assignment = True

# ---- autograding
# a deleted or edited test cell comes back from the gradebook's copy
c.OverwriteCells.add_missing_cells = True
# code that swallows KeyboardInterrupt must cost that cell, not the whole notebook
c.Execute.raise_on_iopub_timeout = False
c.Execute.timeout = int(os.environ.get("COURSE_CELL_TIMEOUT", "30"))  # seconds per cell
c.Execute.startup_timeout = 60
c.Execute.interrupt_on_timeout = True
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 50
c.Autograde.autograde_preprocessors = [
    "grader.verdict.PrepareCases",
    "grader.sandbox.execute.SandboxedExecute",
    "grader.verdict.Verdict",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Verdict.verdict_directory = os.path.join(ROOT, "grader", "verdicts")
c.PrepareCases.course_root = ROOT  # its grader/secret/ holds the hidden-case salt
# edited nbgrader metadata (a renamed grade id, answer cells flagged as tests) made
# nbgrader drop the whole notebook (KeyError in OverwriteCells): restore every cell's
# nbgrader metadata from the gradebook first (grader/sandbox/sanitize.py)
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "grader.sandbox.sanitize.RestoreCellMetadata",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# the sandbox switch: only an explicit --no-sandbox (COURSE_SANDBOX=0) turns it off
c.SandboxedExecute.sandbox = os.environ.get("COURSE_SANDBOX", "1") != "0"
c.SandboxedExecute.timeout = c.Execute.timeout
c.SandboxedExecute.notebook_timeout = int(os.environ.get("COURSE_NOTEBOOK_TIMEOUT", "300"))

# ---- feedback: never show hidden tests
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
# ---- feedback pages run nothing: sanitized, a script-free Content-Security-Policy, and
# the machine's folders shown as [course], [venv], [tmp]... (grader/inert.py)
c.GenerateFeedback.exporter_class = "grader.inert.InertHTMLExporter"
c.InertHTMLExporter.course_root = ROOT
