"""Written answers graded by hand through `python -m grader written`, in Chromium.

A class of three is autograded for real (nbgrader, the demo assignment), then an
instructor opens the page the command prints, goes to the written question, types
scores and comments for the whole class and saves. The marks must arrive in nbgrader's
gradebook, grades.csv, the student's feedback page, the report and the LMS export."""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from helpers import DEMO, REPO, read_grades
from helpers import DEMO_ENV as ENV

ANSWERS = {"ada": "Subtracting the max leaves softmax unchanged and keeps exp from overflowing.",
           "bo": "Because <script>document.title='pwned'</script> it is faster.",
           "cy": None}  # cy leaves the written answer as the template gave it


def grader(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=900, **kw)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    from grader import synthetic

    root = tmp_path_factory.mktemp("course")
    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copytree(DEMO / "solutions", root / "solutions")
    assert grader("release", "--root", str(root)).returncode == 0
    solved = synthetic.solved(root / "solutions/00_demo/00_demo.ipynb",
                              root / "exercises/00_demo/00_demo.ipynb")
    blank = nbformat.read(root / "exercises/00_demo/00_demo.ipynb", as_version=4)
    for student, text in ANSWERS.items():
        nb = nbformat.from_dict(dict(solved if text else blank))
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") == "why_max" and text:
                cell.source = text
        synthetic.write_submission(root, student, "00_demo", nb)
    proc = grader("grade", "--root", str(root), "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


@pytest.fixture(scope="module")
def server(course):
    proc = subprocess.Popen([sys.executable, "-m", "grader", "written", "--root", str(course),
                             "--port", "0"], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    url = re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", line)
    assert url, line + proc.stderr.read() if proc.poll() is not None else line
    yield url.group(0)
    proc.terminate()
    proc.wait(timeout=30)


def grades(root: Path) -> dict:
    return {student: row for (student, _), row in read_grades(root).items()}


def test_scores_typed_in_chromium_reach_every_output(course, server, browser):
    before = grades(course)
    # nbgrader scores an untouched answer 0 by itself ("No response"): cy needs no grader
    assert [s for s, r in before.items() if r["needs_manual_grade"] == "True"] == ["ada", "bo"]
    assert before["ada"]["manual_score"] == ""
    page = browser.new_page()
    page.goto(server)
    assert "0 of 3 graded" in page.inner_text("body")
    page.click("text=00_demo: why_max")
    assert "why subtract the max?" in page.inner_text("blockquote")
    # student text is shown as text: bo's script neither runs nor becomes markup
    assert "<script>document.title='pwned'</script>" in page.inner_text("body")
    assert page.title() != "pwned"
    # an impossible score is refused by the form itself (the server checks it too,
    # see below); what was typed stays
    page.fill("input[name='score:ada']", "1")
    page.fill("input[name='score:bo']", "7")
    page.fill("textarea[name='comment:ada']", "Both reasons, well put.")
    page.click("text=Save all")
    assert page.locator("input[name='score:bo']:invalid").count() == 1
    assert "Saved" not in page.inner_text("body")
    assert page.input_value("textarea[name='comment:ada']") == "Both reasons, well put."
    page.fill("input[name='score:bo']", "0.5")
    page.fill("textarea[name='comment:bo']", "Speed is not the reason: overflow is.")
    page.fill("input[name='score:cy']", "0")
    page.click("text=Save all")
    page.wait_for_selector("text=Saved: 3 changed")
    page.click("text=All questions")
    assert "3 of 3 graded" in page.inner_text("body")
    page.close()

    after = grades(course)
    ada, bo = after["ada"], after["bo"]
    assert ada["manual_score"] == "1" and ada["manual_max_score"] == "1"
    assert float(ada["score"]) == float(ada["auto_score"]) + 1
    assert float(bo["score"]) == float(bo["auto_score"]) + 0.5
    assert ada["needs_manual_grade"] == "False"
    assert "why_max: Speed is not the reason" in bo["comments"]
    feedback = (course / "grader/feedback/bo/00_demo/00_demo.html").read_text()
    assert "Speed is not the reason: overflow is." in feedback
    report = (course / "grader/report/index.html").read_text()
    assert "<h2>Written answers</h2>" in report and "3 of 3" in report

    roster = course / "roster.csv"
    roster.write_text("student_id,email\nada,ada@uni.example\nbo,bo@uni.example\n"
                      "cy,cy@uni.example\n")
    assert grader("export", "--root", str(course), "--format", "moodle",
                  "--roster", str(roster)).returncode == 0
    with open(course / "grader/export/moodle.csv", newline="") as fh:
        rows = {r["Email address"]: r for r in csv.DictReader(fh)}
    assert float(rows["bo@uni.example"]["00_demo (out of 4)"]) == float(bo["score"])
    assert "Speed is not the reason" in rows["bo@uni.example"]["Feedback: 00_demo"]


def test_requests_without_the_token_or_from_another_host_are_refused(server):
    bare = server.split("?")[0]
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bare, timeout=30)
    assert err.value.code == 403
    token = server.split("token=")[1]
    req = urllib.request.Request(bare + "q/0", data=f"token={token}&score:ada=0".encode(),
                                 headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 403
    # the server checks scores itself: a posted score out of range saves nothing
    req = urllib.request.Request(bare + "q/0", data=f"token={token}&score:ada=7".encode())
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=60)
    assert err.value.code == 400 and "7 is outside 0 to 1" in err.value.read().decode()
    page = urllib.request.urlopen(server, timeout=30)
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'none'
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
