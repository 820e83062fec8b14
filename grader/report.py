"""grader/grades.csv and the class report grader/report/index.html (with plots)."""
from __future__ import annotations

import collections
import csv
import html
import io
import json
from pathlib import Path

from . import annotations, gradebook, inert
from .atomic_files import replace_text

CSV_FIELDS = ["student", "assignment", "score", "max_score", "auto_score", "auto_max_score",
              "needs_manual_grade", "status", "note", "sandboxed"]


def _gradebook_rows(root: Path, present: set) -> list[dict]:
    from nbgrader.api import MissingEntry

    rows = []
    with gradebook.connect(root) as gb:
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
        # "no": graded with --no-sandbox (the student's code ran with the grader's rights)
        row["sandboxed"] = {True: "yes", False: "no"}.get(st.get("sandboxed"), "")
        if row["status"] == "not graded":
            row["score"] = row["auto_score"] = 0.0
    annotations.annotate(root, rows)
    path = root / "grader" / "grades.csv"
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=CSV_FIELDS + annotations.COLUMNS)
    w.writeheader()
    for row in rows:
        w.writerow({k: (f"{v:g}" if isinstance(v, float) else v) for k, v in row.items()})
    replace_text(path, text.getvalue())
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


BINS = [i / 10 for i in range(11)]  # autograded score fraction, ten bins


def report_data(grades: list[dict], verdicts: list[dict]) -> dict:
    """The numbers behind the report (also written as report/data.json):

    * ``score_fractions[a]``: each submission's autograded score / autograded maximum;
    * ``histogram[a]``: how many of those fall in each of the ten ``BINS`` (the last bin
      includes 1.0), i.e. the bars of scores.png;
    * ``tests[test]``: [submissions that passed it, submissions graded on it];
    * ``mistakes``: [[test: mistake, submissions], ...], most frequent first (top 15);
    * ``not_graded``: [[student, assignment, reason], ...];
    * ``unsandboxed``: how many submissions were graded with ``--no-sandbox``.
    """
    import numpy as np

    fractions = collections.defaultdict(list)
    for g in grades:
        mx = float(g["auto_max_score"] or 0)
        fractions[g["assignment"]].append(float(g["auto_score"] or 0) / mx if mx else 0.0)
    tests = collections.defaultdict(lambda: [0, 0])
    mistakes = collections.Counter()
    for v in verdicts:
        for t in v["tests"]:
            key = f"{v['assignment']}:{t['name']}"
            tests[key][1] += 1
            tests[key][0] += bool(t["passed"])
            if t.get("mistake"):
                mistakes[f"{key}: {t['mistake']}"] += 1
    return {
        "students": len({g["student"] for g in grades}),
        "submissions": len(grades),
        "score_fractions": {a: sorted(f) for a, f in sorted(fractions.items())},
        "histogram": {a: np.histogram(f, bins=BINS)[0].tolist()
                      for a, f in sorted(fractions.items())},
        "tests": {k: tests[k] for k in sorted(tests)},
        "mistakes": [[k, n] for k, n in mistakes.most_common(15)],
        "not_graded": [[g["student"], g["assignment"], g["note"]] for g in grades
                       if g["status"] == "not graded"],
        "unsandboxed": sum(g.get("sandboxed") == "no" for g in grades),
    }


def write_report(root: Path, present: set) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out = root / "grader" / "report"
    out.mkdir(parents=True, exist_ok=True)
    with open(root / "grader" / "grades.csv") as fh:
        grades = list(csv.DictReader(fh))
    data = report_data(grades, load_verdicts(root, present))
    (out / "data.json").write_text(json.dumps(data, indent=1))

    names = list(data["histogram"])
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(3.2 * max(1, len(names)), 2.8),
                             squeeze=False, sharey=True)
    for ax, a in zip(axes[0], names):
        ax.stairs(data["histogram"][a], BINS, fill=True, color="#4477aa")
        ax.set_title(a)
        ax.set_xlabel("autograded score (fraction)")
    axes[0][0].set_ylabel("students")
    axes[0][0].yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=90)
    plt.close(fig)

    tests = data["tests"]
    tnames = list(tests)
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(tnames) + 1.2))
    ax.barh(tnames, [tests[k][0] / tests[k][1] for k in tnames], color="#228833")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("pass rate")
    fig.tight_layout()
    fig.savefig(out / "pass_rate.png", dpi=90)
    plt.close(fig)

    top = data["mistakes"]
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

    fractions = data["score_fractions"]
    not_graded = data["not_graded"]
    n_plain = data["unsandboxed"]
    unsandboxed = (f"<p><strong>Warning: {n_plain} submission(s) were graded without the "
                   "sandbox (--no-sandbox): their code ran with the grader's rights; see the "
                   "column sandboxed of grades.csv.</strong></p>\n" if n_plain else "")
    # the page is one file: its plots are embedded (the PNGs stay beside it for reuse)
    plot = {name: inert.data_uri(out / f"{name}.png")
            for name in ("scores", "pass_rate", "mistakes")}
    body = f"""<h1>Grading report</h1>
<p>{data['students']} students, {data['submissions']} submissions.</p>
{unsandboxed}<h2>Score distribution per assignment</h2><img src="{plot['scores']}" alt="score histograms">
{table(["assignment", "submissions", "mean autograded fraction"],
       [(a, len(f), f"{sum(f) / len(f):.2f}") for a, f in fractions.items()])}
<h2>Pass rate per test</h2><img src="{plot['pass_rate']}" alt="pass rate per test">
{table(["test", "passed", "graded"], [(k, p, n) for k, (p, n) in tests.items()])}
<h2>Most frequent diagnosed mistakes</h2><img src="{plot['mistakes']}" alt="most frequent mistakes">
{table(["mistake", "submissions"], top)}
<h2>Submissions that could not be graded</h2>
{table(["student", "assignment", "reason"], not_graded) if not_graded else "<p>None.</p>"}
{annotations.report_sections(root)}
"""
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}"
             "table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}")
    (out / "index.html").write_text(inert.page("Grading report", body, style))
    return out / "index.html"
