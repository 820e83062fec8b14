"""The adversarial corpus graded as a class through the real `python -m grader grade`
(what `make grade` runs), sandbox on, together with honest students, twice at the same
time on one machine: as the user running the tests (root in CI) and as an ordinary
user (created with useradd when the tests run as root) on a copy of the course and
of the code that this user owns.

The user running the tests grades every submission of tests/fixtures/adversarial/
corpus.py. The ordinary user grades the submissions whose containment depends on who
runs the grader (``BY_USER``: reading and writing files, links, the salt, processes,
disk, network); the others attack the grader's logic (patched checks, edited test
cells, time limits, broken notebooks), which is the same code for every user.

For every submission of a run: the autograded score it deserves (0 for the functions
it attacks with, full for its honest rest) and a clear line in its feedback. For each
run: the course tree and a canary folder outside it are unchanged (contents, modes,
owners) apart from the grader's own output folders, nothing but the notebook is left
in any autograded folder, the salt appears in no output, no connection reached a
listening socket, the gradebook passes SQLite's integrity check; the two runs give the
same grades to the submissions they share.
Cell timeout 8 s (COURSE_CELL_TIMEOUT) to keep the runs short.
"""
from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from helpers import feedback_page, grader_env, hidden_calls, page_text, read_grades

REPO = Path(__file__).resolve().parent.parent
ADV = REPO / "tests" / "fixtures" / "adversarial"
A = "90_adv"
USER = "bptt-grader"  # the ordinary user the tests create when they run as root
# what the ordinary user grades: the honest controls (honest-1's and honest-2's files are
# targets of the attacks) and every attack whose reach depends on the user's rights
# (files, links, the salt, the process limit, which root does not have, home and
# scratch folders, the network)
BY_USER = {"honest-1", "honest-2", "read-secrets", "write-outside", "plant-links",
           "records-and-cases", "steal-salt", "folder-links", "notebook-link",
           "import-reference-any-route", "fork-bomb", "disk-fill", "fill-socket-folder",
           "network"}

ENV = grader_env(ADV, registry="adv_registry", COURSE_CELL_TIMEOUT="8",
                 COURSE_NOTEBOOK_TIMEOUT="90")
# the grader's own output: everything else in the course root must be unchanged
OUTPUT = {"grader/autograded", "grader/feedback", "grader/verdicts", "grader/report",
          "grader/gradebook.db", "grader/gradebook.db-journal", "grader/grades.csv",
          "grader/grading_state.json", "grader/downloaded", "grader/secret", "grader/backup"}

OUTPUT |= {"grader/similarity.json",  # the grader's flags,
           "grader/intake.json", "grader/export"}  # LMS in and out
OUTPUT |= {"grader/template.db", "grader/template.db-journal",  # the workers' blank
           "grader/template.key"}  # gradebook and what it was made from


def tree_digest(root: Path, skip=()) -> dict[str, str]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", ".pytest_cache")
                         and os.path.normpath(os.path.join(rel_dir, d)) not in skip)
        for f in sorted(files):
            rel = os.path.normpath(os.path.join(rel_dir, f))
            if rel in skip or f.endswith(".pyc"):
                continue
            p = Path(dirpath, f)
            st = p.lstat()
            # links by their target's name, fifos and devices by their mode: never opened
            data = (os.readlink(p).encode() if stat.S_ISLNK(st.st_mode) else
                    p.read_bytes() if stat.S_ISREG(st.st_mode) else b"")
            out[rel] = hashlib.sha256(data).hexdigest() + f":{st.st_mode:o}:{st.st_uid}"
        for d in dirs:
            st = Path(dirpath, d).lstat()
            out[os.path.normpath(os.path.join(rel_dir, d)) + "/"] = f"{st.st_mode:o}:{st.st_uid}"
    return out


def _ordinary_user():
    """(uid, gid, name) of the ordinary user who grades the second copy: this user when
    the tests do not run as root, else ``USER`` (created once with useradd)."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", USER], check=True)
        pw = pwd.getpwnam(USER)
    return pw.pw_uid, pw.pw_gid, USER


def _as_user(uid, gid, argv, env=None, view=()):
    """argv run as the ordinary user, in exactly the environment ``env``, after the
    ``view`` command (see ``_interpreter_view``) when there is one."""
    argv = ["env", "-i", *(f"{k}={v}" for k, v in (env or {}).items()), *argv]
    if os.geteuid() != 0:
        return argv
    return [*view, "setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--",
            *argv]


def _interpreter_view(uid, gid) -> list[str]:
    """A command prefix that lets the ordinary user run this venv's interpreter: none
    if it can already, else (as root) a private mount namespace in which the folder
    that locks it out (e.g. /root, mode 0700, above a pyenv Python) is replaced by a
    world-traversable tmpfs holding only the interpreter's own folder."""
    probe = [sys.executable, "-c", "import nbgrader"]
    if subprocess.run(_as_user(uid, gid, probe), capture_output=True).returncode == 0:
        return []
    path = Path(os.path.realpath(sys.base_prefix))
    blocked = next((p for p in reversed(path.parents) if not p.stat().st_mode & 0o001), None)
    if blocked is None or os.geteuid() != 0:
        pytest.fail(f"the ordinary user {uid} cannot run {sys.executable}")
    keep = blocked / path.relative_to(blocked).parts[0]
    script = ('set -e; d=$(mktemp -d); mount --bind "$1" "$d"; '
              'mount -t tmpfs -o mode=0755 tmpfs "$2"; mkdir -p "$1"; mount --bind "$d" "$1"; '
              'umount "$d"; rmdir "$d"; shift 2; exec "$@"')
    view = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            str(keep), str(blocked)]
    if subprocess.run(_as_user(uid, gid, probe, view=view), capture_output=True).returncode:
        pytest.fail(f"the ordinary user {uid} cannot run {sys.executable}, even with "
                    f"{blocked} opened for it")
    return view


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", f"{uid}:{gid}", str(path)], check=True)


def _canary(folder: Path) -> Path:
    """Files outside any course tree that no submission may change."""
    folder.mkdir(exist_ok=True)
    (folder / "canary.txt").write_text("canary\n")
    (folder / "private.txt").write_text("private\n")
    os.chmod(folder / "private.txt", 0o600)
    os.chmod(folder, 0o755)
    return folder


def _build_course(root: Path, code: Path, canary: Path, port: int, env: dict, only=None):
    """A scratch course at ``root`` with the corpus submitted (the students in ``only``,
    if given): {student: Case}."""
    sys.path.insert(0, str(ADV))
    try:
        import build_source
        import corpus
    finally:
        sys.path.remove(str(ADV))
    from grader import synthetic

    (root / "nbgrader_config.py").write_text((REPO / "nbgrader_config.py").read_text())
    build_source.write(root)
    subprocess.run([sys.executable, "-m", "grader", "release", "--root", str(root)],
                   cwd=REPO, env=env, check=True, capture_output=True)
    solved = synthetic.solved(root / "solutions" / A / f"{A}.ipynb",
                              root / "exercises" / A / f"{A}.ipynb")
    cases = corpus.build(root, solved, port, code, canary)
    for student in set(cases) - set(only or cases):
        shutil.rmtree(root / "grader" / "submitted" / student)
        del cases[student]
    return cases


def _grade_cmd(python: str, root: Path) -> list[str]:
    return [python, "-m", "grader", "grade", "--root", str(root), "-q", "-j", "2"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from grader import judge

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.5)
    port = srv.getsockname()[1]
    connections: list = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connections.append(srv.accept()[1])
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()

    # the ordinary user's side: its own copy of the code, a course and canaries it owns
    uid, gid, name = _ordinary_user()
    # outside pytest's temporary folder, which only the user running the tests may enter
    home = Path(tempfile.mkdtemp(prefix="bptt-ordinary-user-"))
    code = home / "code"
    for part in ("grader", "course_lib"):
        shutil.copytree(REPO / part, code / part,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(ADV, code / "adversarial", ignore=shutil.ignore_patterns("__pycache__"))
    user_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
                "PYTHONPATH": os.pathsep.join([str(code / "adversarial"), str(code)]),
                **{k: ENV[k] for k in ENV if k.startswith("COURSE_")}}
    user_root = home / "course"
    user_root.mkdir()
    user_canary = _canary(home / "canary")
    user_cases = _build_course(user_root, code, user_canary, port, ENV, only=BY_USER)
    assert set(user_cases) == BY_USER, set(user_cases) ^ BY_USER

    root = tmp_path_factory.mktemp("advcourse")
    canary = _canary(tmp_path_factory.mktemp("canary"))
    cases = _build_course(root, REPO, canary, port, ENV)
    # the same salt in both courses: the same hidden cases, so the same grades
    judge.grading_salt(root)
    (user_root / "grader" / "secret").mkdir(mode=0o700)
    shutil.copy2(root / judge.SALT_FILE, user_root / judge.SALT_FILE)
    _chown_tree(home, uid, gid)
    view = _interpreter_view(uid, gid)
    before = {"main": tree_digest(root, OUTPUT), "user": tree_digest(user_root, OUTPUT),
              "main canary": tree_digest(canary), "user canary": tree_digest(user_canary)}

    t0 = time.monotonic()
    as_user = subprocess.Popen(_as_user(uid, gid, _grade_cmd(sys.executable, user_root),
                                        user_env, view),
                               cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    proc = subprocess.Popen(_grade_cmd(sys.executable, root), cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=900)
    user_out, user_err = as_user.communicate(timeout=900)
    stop.set()
    print(f"\nadversarial corpus: {len(cases)} submissions, graded by this user and by "
          f"{name} at the same time: {time.monotonic() - t0:.0f} s")
    assert proc.returncode == 0, out + err
    assert as_user.returncode == 0, user_out + user_err
    runs = {"main": {"root": root, "canary": canary, "cases": cases, "stdout": out},
            "user": {"root": user_root, "canary": user_canary, "cases": user_cases,
                     "stdout": user_out}}
    yield {"runs": runs, "before": before, "connections": connections}
    shutil.rmtree(home, ignore_errors=True)


RUNS = ["main", "user"]  # the user running the tests; the ordinary user


def grades(root: Path) -> dict:
    return {s: row for (s, a), row in read_grades(root).items() if a == A}


def feedback_text(root: Path, student: str) -> str:
    return page_text(feedback_page(root, student, A))


def test_a_sandbox_can_be_made_here():
    """No skipping: grading safely is part of what `make test` checks."""
    from grader import sandbox

    assert sandbox.problem() is None, sandbox.problem()


@pytest.mark.parametrize("run", RUNS)
def test_each_submission_gets_the_score_it_deserves(graded, run):
    r = graded["runs"][run]
    g = grades(r["root"])
    wrong = {s: (g.get(s, {}).get("auto_score"), c.score) for s, c in r["cases"].items()
             if s not in g or float(g[s]["auto_score"] or 0) != c.score}
    assert not wrong, f"student: (got, expected) {wrong}"
    # nobody's maximum grew (changed points / grade ids / answer cells made tests)
    maxes = {s: row["auto_max_score"] for s, row in g.items() if row["status"] == "graded"}
    assert set(maxes.values()) == {"5"}, maxes
    assert {row["sandboxed"] for row in g.values() if row["status"] == "graded"} == {"yes"}


def test_both_runs_give_the_same_grades(graded):
    """Two runs by two users on two copies with the same salt agree."""
    main, user = (grades(graded["runs"][k]["root"]) for k in RUNS)
    assert set(user) == BY_USER
    cols = ("score", "auto_score", "status")
    assert {s: [r[c] for c in cols] for s, r in main.items() if s in BY_USER} == {
        s: [r[c] for c in cols] for s, r in user.items()}


@pytest.mark.parametrize("run", RUNS)
def test_each_feedback_has_a_clear_line(graded, run):
    r = graded["runs"][run]
    missing = {}
    hidden_checked = 0
    for s, c in r["cases"].items():
        text = feedback_text(r["root"], s)
        if c.feedback not in text:
            missing[s] = (c.feedback, text[:400])
        if (r["root"] / "grader" / "autograded" / s / A).is_dir():
            # positive control: the graded notebook has hidden calls; the page's text
            # shows their visible twins but not them
            for line in hidden_calls(r["root"], s, A):
                assert line not in text, (s, line)
                assert line.replace(", hidden=True", "") in text, (s, line)
                hidden_checked += 1
    assert not missing, missing
    assert hidden_checked >= len(r["cases"]) // 2, hidden_checked


@pytest.mark.parametrize("run", RUNS)
def test_nothing_outside_the_sandbox_changed(graded, run):
    r = graded["runs"][run]
    for key, folder, skip in ((run, r["root"], OUTPUT), (f"{run} canary", r["canary"], ())):
        after = tree_digest(folder, skip)
        changed = {k for k in set(after) | set(graded["before"][key])
                   if after.get(k) != graded["before"][key].get(k)}
        assert not changed, (key, sorted(changed)[:20])
    # the repository's own code (other people edit it while tests run: look for the
    # corpus's marks rather than hashing it)
    assert not (REPO / "grader" / "pwned.py").exists()
    for f in list((REPO / "course_lib").rglob("*.py")) + list((REPO / "grader").rglob("*.py")):
        assert b"PWNED" not in f.read_bytes(), f
    assert not graded["connections"]
    assert not list((r["root"] / "grader").glob("pwned*"))


@pytest.mark.parametrize("run", RUNS)
def test_nothing_but_the_notebook_comes_back_from_a_kernel(graded, run):
    """Links, fifos, device nodes and files the kernels left in their working folders
    never reach the grader's folders; the salt appears in no output."""
    root = graded["runs"][run]["root"]
    salt = (root / "grader" / "secret" / "hidden-cases-salt").read_text().strip()
    assert stat.S_IMODE((root / "grader" / "secret").stat().st_mode) == 0o700
    for top in ("autograded", "feedback", "verdicts", "report"):
        for p in (root / "grader" / top).rglob("*"):
            st = p.lstat()
            assert stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode), p
            if top == "autograded" and stat.S_ISREG(st.st_mode):
                assert p.name == f"{A}.ipynb", p
            if stat.S_ISREG(st.st_mode):
                assert salt.encode() not in p.read_bytes(), p


@pytest.mark.parametrize("run", RUNS)
def test_a_submission_is_reduced_to_its_notebook(graded, run):
    """Links and a fifo beside the notebook are neither followed nor copied; the
    instructor is told what was ignored."""
    root = graded["runs"][run]["root"]
    note = grades(root)["folder-links"]["note"]
    assert "ignored in the submission folder" in note, note
    for name in ("shadow.txt", "private.txt", "solutions", "pipe"):
        assert name in note, (name, note)
    graded_folder = root / "grader" / "autograded" / "folder-links" / A
    assert sorted(p.name for p in graded_folder.iterdir()) == [f"{A}.ipynb"]


@pytest.mark.parametrize("run", RUNS)
def test_gradebook_integrity(graded, run):
    db = graded["runs"][run]["root"] / "grader" / "gradebook.db"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_autograded_notebooks_stay_small(graded):
    root = graded["runs"]["main"]["root"]
    for s in ("huge-output-lines", "huge-output-nonewline", "output-flood-cells"):
        nb = root / "grader" / "autograded" / s / A / f"{A}.ipynb"
        assert nb.stat().st_size < 1_500_000, (s, nb.stat().st_size)
