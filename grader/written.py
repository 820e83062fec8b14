"""``python -m grader written``: grade the written answers one question at a time.

A small web page served on 127.0.0.1 lists each manually graded question (an nbgrader
cell that is both an answer and graded) of each assignment. A question's page shows
every student's answer side by side with a score box and a comment box, as graders do
it in Gradescope: one question across the class keeps the marking consistent. Saving
writes nbgrader's own gradebook (the manual score and comment of each grade cell), then
regenerates the feedback of the students whose marks changed, grades.csv (columns
``manual_score``, ``manual_max_score``, ``comments``) and the report.

nbgrader's formgrader reads and writes the same gradebook: run ``jupyter lab`` (or
``jupyter notebook``) from the course root, open Nbgrader > Manage Assignments, and
grade there instead.

The page runs no script (its Content-Security-Policy forbids them), shows student text
escaped, and accepts a request only with the token printed at start and a Host header
naming 127.0.0.1, so another web site open in the same browser cannot post marks.
"""
from __future__ import annotations

import html
import json
import secrets
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import gradebook, nbapi
from .notebook_cells import nbgrader_cells

CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'"
STYLE = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;width:100%}"
         "td,th{border:1px solid #ccc;padding:6px;vertical-align:top;text-align:left}"
         "pre{white-space:pre-wrap;margin:0;max-height:20em;overflow:auto}"
         "textarea{width:100%;min-height:4em}.error{color:#b00}")


# ---------------------------------------------------------------------------- gradebook
def questions(root: Path) -> list[dict]:
    """Every manually graded cell: {assignment, notebook, grade_id, max_score}."""
    out = []
    with gradebook.connect(root) as gb:
        for a in gb.assignments:
            for nb in a.notebooks:
                answers = {c.name for c in nb.solution_cells}
                for cell in nb.grade_cells:
                    if cell.name in answers:
                        out.append({"assignment": a.name, "notebook": nb.name,
                                    "grade_id": cell.name, "max_score": float(cell.max_score)})
    return sorted(out, key=lambda q: (q["assignment"], q["notebook"], q["grade_id"]))


def _cell_source(path: Path, grade_id: str) -> str | None:
    """The source of the cell with this grade id in a notebook file, or None."""
    for cell in nbgrader_cells(path):
        if cell["nbgrader"].get("grade_id") == grade_id:
            return cell["source"]
    return None


def prompt(root: Path, q: dict) -> str:
    """The text just before the answer cell in the source notebook (the question)."""
    path = root / "solutions" / q["assignment"] / f"{q['notebook']}.ipynb"
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return ""
    ids = [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in cells]
    if q["grade_id"] not in ids or ids.index(q["grade_id"]) == 0:
        return ""
    before = cells[ids.index(q["grade_id"]) - 1]
    return "".join(before["source"]) if before["cell_type"] == "markdown" else ""


def answers(root: Path, q: dict) -> list[dict]:
    """{student, answer, score, comment} of every submission of the question's assignment."""
    out = []
    with gradebook.connect(root) as gb:
        for sub in gb.find_assignment(q["assignment"]).submissions:
            student = sub.student.id
            grade = gb.find_grade(q["grade_id"], q["notebook"], q["assignment"], student)
            comment = gb.find_comment(q["grade_id"], q["notebook"], q["assignment"], student)
            text = None
            for folder in ("autograded", "submitted"):
                text = _cell_source(root / "grader" / folder / student / q["assignment"]
                                    / f"{q['notebook']}.ipynb", q["grade_id"])
                if text is not None:
                    break
            out.append({"student": student, "answer": text,
                        "score": grade.manual_score, "comment": comment.manual_comment or ""})
    return sorted(out, key=lambda r: r["student"])


def save(root: Path, q: dict, marks: dict[str, tuple]) -> list[str]:
    """Write {student: (score or None, comment)} to the gradebook; returns the students
    whose marks changed."""
    changed = []
    with gradebook.connect(root) as gb:
        for student, (score, comment) in marks.items():
            grade = gb.find_grade(q["grade_id"], q["notebook"], q["assignment"], student)
            note = gb.find_comment(q["grade_id"], q["notebook"], q["assignment"], student)
            if grade.manual_score == score and (note.manual_comment or "") == comment:
                continue
            grade.manual_score = score
            grade.needs_manual_grade = score is None
            note.manual_comment = comment or None
            changed.append(student)
        gb.db.commit()
    return changed


def publish(root: Path, assignment: str, students: list[str]) -> None:
    """Regenerate the feedback of ``students``, then grades.csv and the report."""
    from . import pipeline, report

    api = nbapi.make_api(root)
    for student in students:
        result = api.generate_feedback(assignment, student, force=True)
        if not result.get("success"):
            print(f"warning: feedback of {student}/{assignment} not regenerated:\n"
                  f"{result.get('log', '')[-1000:]}", file=sys.stderr)
    assignments = nbapi.source_assignments(root)
    tasks, _ = pipeline.discover(root, assignments)
    present = {(t.student, t.assignment) for t in tasks}
    state = pipeline._load_state(root / "grader" / pipeline.STATE_FILE)
    report.write_grades_csv(root, present, state)
    report.write_report(root, present)


def manual_columns(root: Path) -> dict[tuple[str, str], dict]:
    """{(student, assignment): {manual_score, manual_max_score, comments}} for grades.csv."""
    from nbgrader.api import MissingEntry

    out = {}
    try:
        qs = questions(root)
    except Exception:  # noqa: BLE001 - no gradebook yet: no manual columns
        return out
    with gradebook.connect(root) as gb:
        for q in qs:
            try:
                subs = gb.find_assignment(q["assignment"]).submissions
            except MissingEntry:
                continue
            for sub in subs:
                student = sub.student.id
                row = out.setdefault((student, q["assignment"]), {
                    "manual_score": 0.0, "manual_max_score": 0.0, "graded": 0, "comments": []})
                grade = gb.find_grade(q["grade_id"], q["notebook"], q["assignment"], student)
                comment = gb.find_comment(q["grade_id"], q["notebook"], q["assignment"], student)
                row["manual_max_score"] += q["max_score"]
                if grade.manual_score is not None:
                    row["manual_score"] += grade.manual_score
                    row["graded"] += 1
                if comment.manual_comment:
                    row["comments"].append(f"{q['grade_id']}: {comment.manual_comment}")
    return {k: {"manual_score": f"{v['manual_score']:g}" if v["graded"] else "",
                "manual_max_score": f"{v['manual_max_score']:g}",
                "comments": " | ".join(v["comments"])} for k, v in out.items()}


def report_section(root: Path) -> str:
    """The report's summary of the written answers: graded count and mean per question."""
    try:
        qs = questions(root)
    except Exception:  # noqa: BLE001 - no gradebook yet
        return ""
    rows = []
    for q in qs:
        marks = [a["score"] for a in answers(root, q)]
        done = [m for m in marks if m is not None]
        mean = f"{sum(done) / len(done):.2f} / {q['max_score']:g}" if done else "-"
        rows.append(f"<tr><td>{html.escape(q['assignment'])}</td><td>"
                    f"{html.escape(q['grade_id'])}</td><td>{len(done)} of {len(marks)}</td>"
                    f"<td>{mean}</td></tr>")
    return ("<h2>Written answers</h2><p>Graded by hand with <code>python -m grader written"
            "</code> or nbgrader's formgrader.</p><table><tr><th>assignment</th>"
            "<th>question</th><th>graded</th><th>mean score</th></tr>"
            + "".join(rows) + "</table>") if rows else ""


# ---------------------------------------------------------------------------- pages
def _page(title: str, body: str) -> bytes:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>{body}</body></html>").encode()


def index_page(root: Path, token: str) -> bytes:
    items = []
    for i, q in enumerate(questions(root)):
        marks = [a["score"] for a in answers(root, q)]
        done = sum(m is not None for m in marks)
        items.append(f"<li><a href='/q/{i}?token={token}'>{html.escape(q['assignment'])}: "
                     f"{html.escape(q['grade_id'])}</a> ({q['max_score']:g} points): "
                     f"{done} of {len(marks)} graded</li>")
    body = "<h1>Written answers</h1>" + (
        f"<ul>{''.join(items)}</ul>" if items else
        "<p>No manually graded question has submissions: run <code>python -m grader grade"
        "</code> first.</p>")
    return _page("Written answers", body)


def question_page(root: Path, token: str, i: int, q: dict, entered=None, errors=None,
                  saved: int | None = None) -> bytes:
    rows = []
    for a in answers(root, q):
        s = a["student"]
        score, comment = (entered or {}).get(s, (a["score"], a["comment"]))
        shown = "" if score is None else (f"{score:g}" if isinstance(score, float) else score)
        err = (errors or {}).get(s, "")
        answer = ("<em>no answer cell in this submission</em>" if a["answer"] is None
                  else f"<pre>{html.escape(a['answer'])}</pre>")
        rows.append(
            f"<tr><td>{html.escape(s)}</td><td>{answer}</td><td>"
            f"<input type='number' name='score:{html.escape(s)}' value='{html.escape(shown)}' "
            f"min='0' max='{q['max_score']:g}' step='any' aria-label='score of "
            f"{html.escape(s)}'><div class='error'>{html.escape(err)}</div></td><td>"
            f"<textarea name='comment:{html.escape(s)}' aria-label='comment for "
            f"{html.escape(s)}'>{html.escape(comment)}</textarea></td></tr>")
    note = (f"<p class='saved'>Saved: {saved} changed, feedback and grades.csv updated.</p>"
            if saved is not None else "")
    if errors:
        note = "<p class='error'>Nothing saved: fix the marked scores.</p>"
    body = (f"<p><a href='/?token={token}'>All questions</a></p>"
            f"<h1>{html.escape(q['assignment'])}: {html.escape(q['grade_id'])} "
            f"({q['max_score']:g} points)</h1><blockquote><pre>"
            f"{html.escape(prompt(root, q))}</pre></blockquote>{note}"
            f"<form method='post' action='/q/{i}'><input type='hidden' name='token' "
            f"value='{token}'><table><tr><th>student</th><th>answer</th><th>score</th>"
            f"<th>comment</th></tr>{''.join(rows)}</table>"
            "<p><button type='submit'>Save all</button></p></form>")
    return _page(f"{q['assignment']}: {q['grade_id']}", body)


def parse_marks(form: dict, q: dict, students: list[str]):
    """({student: (score or None, comment)}, {student: error}) from a posted form; a
    blank score means "not graded yet"."""
    marks, errors = {}, {}
    for s in students:
        if f"score:{s}" not in form:  # graded after the page was loaded: not on this form
            continue
        raw = (form.get(f"score:{s}") or [""])[0].strip()
        comment = (form.get(f"comment:{s}") or [""])[0].strip()
        score = None
        if raw:
            try:
                score = float(raw)
            except ValueError:
                errors[s] = f"{raw!r} is not a number"
            else:
                if not 0 <= score <= q["max_score"]:
                    errors[s] = f"{raw} is outside 0 to {q['max_score']:g}"
        marks[s] = (raw if s in errors else score, comment)
    return marks, errors


def make_handler(root: Path, token: str, port_holder: list):
    class Handler(BaseHTTPRequestHandler):
        def _allowed(self, given: str) -> bool:
            host = self.headers.get("Host", "")
            return (secrets.compare_digest(given, token)
                    and host in (f"127.0.0.1:{port_holder[0]}", f"localhost:{port_holder[0]}"))

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _question(self, path: str):
            qs = questions(root)
            try:
                i = int(path.removeprefix("/q/"))
                return i, qs[i]
            except (ValueError, IndexError):
                return None, None

        def do_GET(self):  # noqa: N802 - http.server's name
            url = urllib.parse.urlsplit(self.path)
            given = urllib.parse.parse_qs(url.query).get("token", [""])[0]
            if not self._allowed(given):
                return self._send(403, _page("Forbidden", "<p>Open the address printed by "
                                             "<code>python -m grader written</code>.</p>"))
            if url.path == "/":
                return self._send(200, index_page(root, token))
            i, q = self._question(url.path)
            if q is None:
                return self._send(404, _page("Not found", "<p>No such question.</p>"))
            return self._send(200, question_page(root, token, i, q))

        def do_POST(self):  # noqa: N802
            length = min(int(self.headers.get("Content-Length") or 0), 10 * 2**20)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8", "replace"),
                                         keep_blank_values=True)
            if not self._allowed(form.get("token", [""])[0]):
                return self._send(403, _page("Forbidden", "<p>Bad token.</p>"))
            i, q = self._question(urllib.parse.urlsplit(self.path).path)
            if q is None:
                return self._send(404, _page("Not found", "<p>No such question.</p>"))
            students = [a["student"] for a in answers(root, q)]
            marks, errors = parse_marks(form, q, students)
            if errors:
                return self._send(400, question_page(root, token, i, q, marks, errors))
            changed = save(root, q, marks)
            if changed:
                publish(root, q["assignment"], changed)
            return self._send(200, question_page(root, token, i, q, saved=len(changed)))

        def log_message(self, *args):  # the terminal shows the address, not every request
            pass

    return Handler


def serve(root: Path, port: int = 8765, ready=print) -> None:
    """Serve the grading pages on 127.0.0.1 until interrupted (a GradingError first
    when the gradebook cannot be opened)."""
    questions(root)
    token = secrets.token_urlsafe(24)
    holder = [port]
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(root, token, holder))
    holder[0] = server.server_address[1]
    ready(f"grade the written answers at http://127.0.0.1:{holder[0]}/?token={token}  "
          "(Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
