"""Command line: ``python -m grader {check,grade,release,export}``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

USAGE = """examples:
  python -m grader check exercises/03_bptt/03_bptt.ipynb   # student self-check
  python -m grader grade                                   # grade grader/submitted/*
  python -m grader grade --zip downloads.zip               # collect an LMS zip first
  python -m grader grade --cluster tcp://host:8786         # grade on a Dask cluster
  python -m grader release                                 # regenerate exercises/
  python -m grader written                                 # grade written answers by hand
  python -m grader export --format canvas                  # grades as Canvas imports them
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m grader", epilog=USAGE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("check", help="run a notebook's visible tests; exit 1 on failure")
    c.add_argument("notebook")
    c.add_argument("--timeout", type=int, default=120, help="seconds per cell")

    g = sub.add_parser("grade", help="autograde every submission in grader/submitted/")
    g.add_argument("--root", help="course root (default: this repository)")
    g.add_argument("--zip", dest="zip_path",
                   help="an LMS download to collect first (Canvas, Moodle, or "
                        "<student>_<assignment>.ipynb files)")
    g.add_argument("--roster", help="CSV mapping LMS ids or names to student ids "
                                    "(column student_id, and lms_id, name, email, ...)")
    g.add_argument("--assignment", help="grade only this assignment")
    g.add_argument("-j", "--workers", type=int,
                   help="local worker processes (default: one per core)")
    g.add_argument("--cluster", metavar="ADDRESS",
                   help="grade on the Dask cluster whose scheduler is at ADDRESS "
                        "(e.g. tcp://host:8786); its workers need the same course checkout")
    g.add_argument("--local-cluster", type=int, metavar="N",
                   help="grade on a Dask LocalCluster of N workers started for this run")
    g.add_argument("--no-sandbox", action="store_true",
                   help="run student code WITHOUT the sandbox, with your rights (trusted "
                   "submissions only; grades.csv and the report say so)")
    g.add_argument("--force", action="store_true", help="regrade even unchanged submissions")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    r = sub.add_parser("release", help="generate exercises/ from solutions/")
    r.add_argument("--root")
    r.add_argument("--to", dest="release_dir", help="release folder (default: exercises/)")
    r.add_argument("assignments", nargs="*")

    e = sub.add_parser("export", help="write grades as a Canvas or Moodle import CSV")
    e.add_argument("--root")
    e.add_argument("--format", required=True, choices=["canvas", "moodle"])
    e.add_argument("--roster", help="CSV mapping student ids to LMS ids (see grade --roster)")
    e.add_argument("--assignment", action="append", help="only this assignment (repeatable)")
    e.add_argument("--lms-assignment", action="append", default=[], metavar="A=ID",
                   help="the LMS's id of assignment A (Canvas: the number in its URL)")
    e.add_argument("-o", "--out", help="output file (default: grader/export/<format>.csv)")

    w = sub.add_parser("written", help="grade the written answers, one question across "
                                       "the class at a time, in a local web page")
    w.add_argument("--root")
    w.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free)")

    args = p.parse_args(argv)
    if args.cmd == "check":
        from . import selfcheck

        return selfcheck.run(args.notebook, timeout=args.timeout)
    if args.cmd == "release":
        from . import release

        release.release(args.root, args.release_dir, args.assignments or None)
        return 0
    from . import nbapi, pipeline

    if args.cmd == "export":
        return _export(args)
    if args.cmd == "written":
        from . import written

        try:
            written.serve(Path(args.root or nbapi.REPO_ROOT).resolve(), args.port,
                          ready=lambda line: print(line, flush=True))
        except pipeline.GradingError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.roster and not args.zip_path:
        print("error: --roster maps the students of an LMS download: use it with --zip FILE",
              file=sys.stderr)
        return 2
    try:
        s = pipeline.grade(args.root, workers=args.workers, zip_path=args.zip_path,
                           assignment=args.assignment, sandbox=not args.no_sandbox,
                           progress=not args.quiet, force=args.force, roster=args.roster,
                           cluster=args.cluster, local_cluster=args.local_cluster)
    except pipeline.GradingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"graded {len(s.graded)}, not gradable {len(s.failed)}, unchanged "
          f"{len(s.skipped)} in {s.seconds:.1f} s")
    for key in s.failed:
        print(f"  not graded: {key} (see grader/grades.csv, column note)")
    print("wrote grader/grades.csv, grader/feedback/, grader/report/index.html")
    if args.no_sandbox:
        print("WARNING: these submissions were graded WITHOUT the sandbox")
    for line in s.errors:
        print(f"  grader failure: {line}", file=sys.stderr)
    if s.errors:
        print(f"error: {len(s.errors)} submissions were not graded because of the grader's "
              "own failures (above); they are graded again by the next run", file=sys.stderr)
        return 1
    return 0


def _export(args) -> int:
    from . import export, intake, nbapi, pipeline

    try:
        pairs = dict(item.split("=", 1) for item in args.lms_assignment if "=" in item)
        if len(pairs) != len(args.lms_assignment):
            raise pipeline.GradingError("--lms-assignment takes ASSIGNMENT=ID, e.g. 03_bptt=4521")
        roster = intake.Roster.read(Path(args.roster)) if args.roster else None
        export.export(Path(args.root or nbapi.REPO_ROOT), args.format, roster,
                      args.assignment, pairs, args.out)
    except pipeline.GradingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
