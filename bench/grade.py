"""Grading speed, from one run: `python -m grader grade` vs plain sequential nbgrader.

Builds a synthetic class in a scratch course root (default 40 students x every
assignment that has a source notebook and registry entries; the demo assignment of
tests/fixtures if there are none): a third of the submissions perfect, a third with
one catalogued mistake, a third unmodified. Then, on the same submissions:

1. sequential: `nbgrader autograde <a> --force` once per assignment (stock CLI, the
   course's config: verdict step and sandbox included), no feedback;
2. parallel: `python -m grader grade --force` (the local process pool, one worker
   per core; includes feedback HTML, grades.csv and the report), sandbox on;
3. the local pool with 2 workers (`-j 2`) and a Dask LocalCluster of 2 workers
   (`--local-cluster 2`), alternated ``--rounds`` times: the cluster's cost (ratio of
   the medians), with as many workers on both sides;
4. a re-run with nothing changed (incremental: only hashing and the report);
5. the same as 2 with `--no-sandbox`: the sandbox's cost.

Every contender's gradebook is given the assignments before timing (`generate_assignment`
for nbgrader; the workers' blank gradebook, grader/template.db, for `grade`).
Prints wall times, time per notebook, the speed-up (target >= 1.8x on 2 cores), the
cluster's cost (target <= 10%) and the sandbox's cost (target <= 15% on a quiet machine)
as ratios of runs made one after the other in this process.

    python bench/grade.py [--students 40] [--assignments 03_bptt ...] [--rounds 3] [--keep DIR]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "tests" / "fixtures" / "grading_demo"
sys.path[:0] = [str(REPO), str(DEMO)]
os.environ["COURSE_EXERCISES_MODULE"] = "demo_registry"

import nbformat  # noqa: E402

import demo_registry  # noqa: E402
from grader import nbapi, release, synthetic  # noqa: E402

ENV = {**os.environ,
       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
       "PYTHONPATH": os.pathsep.join([str(REPO), str(DEMO)]),
       "COURSE_EXERCISES_MODULE": "demo_registry"}


def build_class(root: Path, assignments: list[str], n_students: int) -> int:
    shutil.copy(REPO / "nbgrader_config.py", root)
    for a in assignments:
        src = (DEMO if a == "00_demo" else REPO) / "solutions" / a
        shutil.copytree(src, root / "solutions" / a)
    release.release(root, assignments=assignments, log=lambda *_: None)
    rng = random.Random(0)
    count = 0
    for a in assignments:
        solved = synthetic.solved(root / "solutions" / a / f"{a}.ipynb",
                                  root / "exercises" / a / f"{a}.ipynb")
        blank = nbformat.read(root / "exercises" / a / f"{a}.ipynb", as_version=4)
        mistakes = [(k, s) for k, s in demo_registry.MISTAKE_SOURCES.items() if k[0] == a]
        for i in range(n_students):
            kind = i % 3
            if kind == 0 or not mistakes:
                nb = solved
            elif kind == 1:
                key, source = rng.choice(mistakes)
                nb = synthetic.with_cell_replaced(
                    solved, synthetic.mistake_fn_name(key, source), source)
            else:
                nb = blank
            synthetic.write_submission(root, f"s{i:03d}", a, nb)
            count += 1
    return count


def _reset(root: Path) -> None:
    for name in ("autograded", "feedback", "verdicts", "report", "gradebook.db",
                 "grades.csv", "grading_state.json"):
        p = root / "grader" / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def timed(cmd, cwd, env) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--students", type=int, default=40)
    p.add_argument("--assignments", nargs="*")
    p.add_argument("--keep", help="build the class here and keep it")
    p.add_argument("--skip-sequential", action="store_true")
    p.add_argument("--rounds", type=int, default=3,
                   help="alternating rounds of the local pool and the LocalCluster (medians)")
    args = p.parse_args()
    real = [a for a in nbapi.source_assignments(REPO)
            if any(k[0] == a for k in demo_registry.EXERCISES)]
    assignments = args.assignments or real or ["00_demo"]
    root = Path(args.keep or tempfile.mkdtemp(prefix="bptt-bench-grade-"))
    root.mkdir(parents=True, exist_ok=True)
    n = build_class(root, assignments, args.students)
    from grader.pipeline import default_workers

    print(f"synthetic class: {args.students} students x {len(assignments)} assignments "
          f"({', '.join(assignments)}) = {n} notebooks; {len(os.sched_getaffinity(0))} "
          f"cores, {default_workers()} grading workers")
    nbgrader = str(Path(sys.executable).parent / "nbgrader")
    env = {**ENV, "COURSE_SANDBOX": "1"}

    # the gradebook needs the assignments first (same for every contender, not timed)
    def prepare():
        _reset(root)
        with tempfile.TemporaryDirectory() as rel:
            for a in assignments:
                timed([nbgrader, "generate_assignment", a, "--force",
                       f"--CourseDirectory.release_directory={rel}"], root, env)

    seq = None
    if not args.skip_sequential:
        prepare()
        seq = sum(timed([nbgrader, "autograde", a, "--force"], root, env) for a in assignments)
        print(f"sequential nbgrader autograde : {seq:7.1f} s  ({seq / n:.2f} s/notebook)")
    grader_cmd = [sys.executable, "-m", "grader", "grade", "--root", str(root), "-q", "--force"]
    _reset(root)
    # like the sequential runs' gradebook above, the workers' blank gradebook is made
    # before timing (grader/template.db; a course makes it once per change of a source)
    from grader.pipeline import template_gradebook

    template_gradebook(root, assignments)
    par = timed(grader_cmd, REPO, env)
    print(f"python -m grader grade        : {par:7.1f} s  ({par / n:.2f} s/notebook, "
          "incl. feedback + report)")
    if seq:
        print(f"speed-up vs sequential        : {seq / par:7.2f}x  (target >= 1.8x on 2 cores)")
    # the cluster's cost against a local pool with as many workers, in alternating
    # rounds (one pair of runs differed by up to 15 % on a shared 2-core machine)
    pools, dasks = [], []
    for _ in range(args.rounds):
        for runs, flags in ((pools, ["-j", "2"]), (dasks, ["--local-cluster", "2"])):
            _reset(root)
            runs.append(timed(grader_cmd + flags, REPO, env))
    pool2, dask = statistics.median(pools), statistics.median(dasks)
    print(f"grade -j 2 (local pool)       : {pool2:7.1f} s  ({pool2 / n:.2f} s/notebook; "
          f"median of {', '.join(f'{t:.1f}' for t in pools)})")
    print(f"grade --local-cluster 2       : {dask:7.1f} s  ({dask / n:.2f} s/notebook; "
          f"median of {', '.join(f'{t:.1f}' for t in dasks)})")
    print(f"cluster cost (local cluster 2 / local pool -j 2): {dask / pool2:5.2f}x  "
          f"({100 * (dask / pool2 - 1):+.1f} %; target <= +10 %)")
    rerun = timed(grader_cmd[:-1], REPO, env)  # same settings, nothing changed
    print(f"re-run, nothing changed       : {rerun:7.1f} s")
    _reset(root)
    off = timed(grader_cmd + ["--no-sandbox"], REPO, {**env, "COURSE_SANDBOX": "0"})
    print(f"grade --no-sandbox            : {off:7.1f} s  ({off / n:.2f} s/notebook)")
    print(f"sandbox cost (sandboxed / --no-sandbox): {par / off:5.2f}x  "
          f"({100 * (par / off - 1):+.1f} %; target <= +15 % on a quiet machine)")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
