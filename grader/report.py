"""grader/grades.csv and the class report grader/report/index.html (with plots)."""
from __future__ import annotations

import collections
import csv
import html
import json
import os
from pathlib import Path

from . import annotations, nbapi

CSV_FIELDS = ["student", "assignment", "score", "max_score", "auto_score", "auto_max_score",
              "needs_manual_grade", "status", "note"]


def _gradebook_rows(root: Path, present: set) -> list[dict]:
    from nbgrader.api import Gradebook, MissingEntry

    db_url = nbapi.load_config(root).CourseDirectory.db_url
    rows = []
    with Gradebook(db_url) as gb:
        for student, assignment in sorted(present):
            row = {"student": student, "assignment": assignment}
            try:
                sub = gb.find_submission(assignment, student)
            except MissingEntry:
                a = gb.find_assignment(assignment)
                row.update(score=0.0, max_score=a.max_score, auto_score=0.0,
                           auto_max_score=a.max_code_score, needs_manual_grade=False)
            else:
                auto = sum(g.score for nb in sub.notebooks for g in nb.grades
                           if g.cell_type == "code" and g.auto_score is not None)
                row.update(score=float(sub.score or 0.0), max_score=float(sub.max_score),
                           auto_score=float(auto), auto_max_score=float(sub.max_code_score),
                           needs_manual_grade=bool(sub.needs_manual_grade))
            rows.append(row)
    return rows


def write_grades_csv(root: Path, present: set, state: dict) -> Path:
    subs = state.get("submissions", {})
    rows = _gradebook_rows(root, present)
    for row in rows:
        st = subs.get(f"{row['student']}/{row['assignment']}", {})
        row["status"] = st.get("status", "not graded yet")
        row["note"] = st.get("reason", "")
        if row["status"] == "not graded":
            row["score"] = row["auto_score"] = 0.0
    annotations.annotate(root, rows)
    path = root / "grader" / "grades.csv"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS + annotations.COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{v:g}" if isinstance(v, float) else v) for k, v in row.items()})
    os.replace(tmp, path)
    return path


def load_verdicts(root: Path, present: set) -> list[dict]:
    out = []
    for student, assignment in sorted(present):
        p = root / "grader" / "verdicts" / student / f"{assignment}.json"
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    return out


def write_report(root: Path, present: set) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out = root / "grader" / "report"
    out.mkdir(parents=True, exist_ok=True)
    grades = list(csv.DictReader(open(root / "grader" / "grades.csv")))
    verdicts = load_verdicts(root, present)

    # score distribution per assignment (auto-graded part, as a fraction)
    by_assignment = collections.defaultdict(list)
    for g in grades:
        mx = float(g["auto_max_score"] or 0)
        by_assignment[g["assignment"]].append(float(g["auto_score"] or 0) / mx if mx else 0.0)
    names = sorted(by_assignment)
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(3.2 * max(1, len(names)), 2.8),
                             squeeze=False, sharey=True)
    for ax, a in zip(axes[0], names):
        ax.hist(by_assignment[a], bins=[i / 10 for i in range(11)], color="#4477aa")
        ax.set_title(a)
        ax.set_xlabel("autograded score (fraction)")
    axes[0][0].set_ylabel("students")
    axes[0][0].yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=90)
    plt.close(fig)

    # pass rate per test
    tests = collections.defaultdict(lambda: [0, 0])
    mistakes = collections.Counter()
    for v in verdicts:
        for t in v["tests"]:
            key = f"{v['assignment']}:{t['name']}"
            tests[key][1] += 1
            tests[key][0] += bool(t["passed"])
            if t.get("mistake"):
                mistakes[f"{v['assignment']}:{t['name']}: {t['mistake']}"] += 1
    tnames = sorted(tests)
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(tnames) + 1.2))
    ax.barh(tnames, [tests[k][0] / tests[k][1] for k in tnames], color="#228833")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("pass rate")
    fig.tight_layout()
    fig.savefig(out / "pass_rate.png", dpi=90)
    plt.close(fig)

    top = mistakes.most_common(15)
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(top) + 1.2))
    if top:
        ax.barh([k[:70] for k, _ in top], [n for _, n in top], color="#ee6677")
        ax.invert_yaxis()
    else:
        ax.text(0.5, 0.5, "no diagnosed mistakes", ha="center", va="center")
    ax.set_xlabel("submissions")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(out / "mistakes.png", dpi=90)
    plt.close(fig)

    def table(header, rows):
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                       for r in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    not_graded = [(g["student"], g["assignment"], g["note"]) for g in grades
                  if g["status"] == "not graded"]
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Grading report</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}</style>
</head><body>
<h1>Grading report</h1>
<p>{len({g['student'] for g in grades})} students, {len(grades)} submissions.</p>
<h2>Score distribution per assignment</h2><img src="scores.png" alt="score histograms">
{table(["assignment", "submissions", "mean autograded fraction"],
       [(a, len(by_assignment[a]), f"{sum(by_assignment[a]) / len(by_assignment[a]):.2f}")
        for a in names])}
<h2>Pass rate per test</h2><img src="pass_rate.png" alt="pass rate per test">
{table(["test", "passed", "graded"], [(k, tests[k][0], tests[k][1]) for k in tnames])}
<h2>Most frequent diagnosed mistakes</h2><img src="mistakes.png" alt="most frequent mistakes">
{table(["mistake", "submissions"], top)}
<h2>Submissions that could not be graded</h2>
{table(["student", "assignment", "reason"], not_graded) if not_graded else "<p>None.</p>"}
{annotations.report_sections(root)}
</body></html>
"""
    (out / "index.html").write_text(page)
    return out / "index.html"
