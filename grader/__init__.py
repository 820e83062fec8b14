"""The course's grading tool: ``python -m grader {check,grade,written,export,release}``.

judge.py      the expected outputs (reference, float32 probe, catalogued mistakes) per case;
              the comparison and tolerance model are course_lib.judging's
cells.py      a notebook's test cells before and after it runs: cases in, records judged
verdict.py    nbgrader preprocessors around Execute: PrepareCases, Verdict (cells.py)
pipeline.py   `grade`: the coordinator: collect, gradebook sync, jobs out, results applied
worker.py     one grading task, a pure function of its inputs (private gradebook and folders)
record.py     the one writer of grades: gradebook rows, feedback/autograded/verdict files
runners.py    where tasks run: the local process pool or a Dask cluster
fingerprint.py  the hashes that decide what is graded again (submission, grading inputs)
report.py     grader/grades.csv and grader/report/index.html
selfcheck.py  `check`: a student's self-check of one notebook, on the grader's path
release.py    `release`: exercises/ from solutions/ (nbgrader generate_assignment)
synthetic.py  synthetic submissions for the tests and bench/grade.py
registry.py   where the exercises come from (grader/exercises)
exercises/    the exercise registry and mistake catalogue;  sandbox/  the bubblewrap kernel
intake.py     `grade --zip`: LMS downloads (Canvas, Moodle, own naming) into grader/submitted/
similarity.py copied answers (course_lib or classmates) flagged for the instructor
written.py    `written`: the written answers graded by hand, one question at a time
export.py     `export`: grades as the Canvas or Moodle import CSV
notebook_cells.py  the nbgrader cells of an untrusted notebook file
plain_files.py  a file untrusted code could have planted, read safely (submissions, records)
annotations.py  grades.csv columns and report sections from intake, similarity, written
atomic_files.py  files written for others to read, replaced whole (never seen half-written)
"""
