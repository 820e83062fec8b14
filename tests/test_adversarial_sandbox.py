"""The grading sandbox on its own (grader.sandbox): SandboxedExecute runs small
notebooks whose cells attack the machine, and every attack must be contained while
the cells after it still run. The end-to-end corpus (through `python -m grader grade`)
is in test_adversarial_corpus.py."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from helpers import DEMO, DEMO_ENV, run_grade

from grader import sandbox

ROOT = Path(__file__).resolve().parents[1]


def test_the_sandbox_is_available():
    """These tests fail, never skip, where no sandbox can be made."""
    assert sandbox.problem() is None, sandbox.problem()


def test_each_run_keeps_its_files_in_a_private_folder(tmp_path, monkeypatch):
    """Several graders on one machine: each run gets a fresh folder that only its user
    may enter, and a folder others can enter (or a link) is refused as a run's folder."""
    import stat

    from grader.sandbox import rundir

    runs = [rundir.make_run_root(), rundir.make_run_root()]
    try:
        assert runs[0] != runs[1]
        for path in runs:
            st = os.lstat(path)
            assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid(), path
            assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)
    finally:
        for path in runs:
            rundir.remove_run_root(path)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    (tmp_path / "link").symlink_to(shared)
    for given in (shared, tmp_path / "link"):
        monkeypatch.setenv("COURSE_RUN_DIR", str(given))
        with pytest.raises(RuntimeError, match="not a private folder"):
            rundir.run_root()


def test_the_folder_of_a_killed_run_is_removed_by_the_next_run(tmp_path, monkeypatch):
    """A run killed by SIGKILL cannot remove its folder (the files its submissions wrote
    stay in the temporary directory) or end a sandbox that outlived it: the next run
    removes the folder and kills the processes that name it. It leaves alone the folder
    of a run still alive (and its processes), a folder without a lock file and a link
    named like a run's folder (pointing at an abandoned one)."""
    import signal
    import tempfile

    from grader.sandbox import rundir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    child = ("import os, sys, time; from grader.sandbox import rundir; "
             "p = rundir.make_run_root(); os.makedirs(p + '/k/deep'); "
             "open(p + '/k/deep/answer.npy', 'w').close(); print(p, flush=True); "
             "time.sleep(600)")
    runs = [subprocess.Popen([sys.executable, "-c", child], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, text=True) for _ in range(2)]
    killed, alive = (Path(proc.stdout.readline().strip()) for proc in runs)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / rundir.LOCK).touch()
    (tmp_path / f"{rundir.PREFIX}link").symlink_to(elsewhere)
    unlocked = tmp_path / f"{rundir.PREFIX}nolock"
    unlocked.mkdir()
    # stand-ins for sandboxes: processes whose command line names a run's folder
    strays = {run: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                                     str(run / "k" / "kernel.json")]) for run in (killed, alive)}
    try:
        runs[0].send_signal(signal.SIGKILL)
        assert runs[0].wait() == -signal.SIGKILL
        assert (killed / "k/deep/answer.npy").exists()  # control: killed, nothing removed
        assert strays[killed].poll() is None  # ... and its stray still runs
        new = rundir.make_run_root()
        assert not killed.exists(), "the killed run's folder is still there"
        with contextlib.suppress(subprocess.TimeoutExpired):
            strays[killed].wait(timeout=10)
        assert strays[killed].returncode == -signal.SIGKILL, "its stray still runs"
        assert strays[alive].poll() is None, "a live run's process was killed"
        assert (alive / "k/deep/answer.npy").exists(), "a live run's folder was removed"
        assert (elsewhere / rundir.LOCK).exists() and unlocked.is_dir()
        assert (tmp_path / f"{rundir.PREFIX}link").is_symlink()
        rundir.remove_run_root(new)
        assert not os.path.lexists(new)
    finally:
        runs[1].kill()
        for proc in runs:
            proc.wait()
            proc.stdout.close()
        for proc in strays.values():
            proc.kill()
            proc.wait()
    assert rundir.remove_abandoned() == [str(alive)]  # its run has ended now


def run(cells, tmp_path, name="scratch", timeout=10, notebook_timeout=120, **kw):
    from grader.sandbox.execute import SandboxedExecute

    scratch = tmp_path / name
    scratch.mkdir(exist_ok=True)
    cfg = Config()
    for k, v in kw.items():
        cls, attr = k.split("__")
        cfg[cls][attr] = v
    ep = SandboxedExecute(timeout=timeout, notebook_timeout=notebook_timeout, config=cfg)
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    t0 = time.monotonic()
    ep.preprocess(nb, {"metadata": {"path": str(scratch)}})
    return nb, time.monotonic() - t0


def text(cell) -> str:
    parts = []
    for o in cell.outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type == "error":
            parts.append(f"{o.ename}: {o.evalue}")
        else:
            parts.append(str(o.get("data", {}).get("text/plain", "")))
    return "".join(parts)


def errors(cell) -> list[str]:
    return [o.ename for o in cell.outputs if o.output_type == "error"]


def test_what_the_kernel_can_see_and_do(tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = []
    threading.Thread(target=lambda: got.append(srv.accept()), daemon=True).start()
    secret = tmp_path / "other_student" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("other student's work")
    course = str(ROOT)
    nb, _ = run([
        "import os, socket, subprocess, sys; print('uid', os.getuid())",
        # network: outside address and the host's loopback
        f"""for addr in [('1.1.1.1', 80), ('127.0.0.1', {port})]:
    try:
        socket.create_connection(addr, timeout=2); print('CONNECTED', addr)
    except OSError as e:
        print('refused', addr, type(e).__name__)""",
        # course tree, other students, root-only files, the rest of the temp dir
        f"""for p in [{course!r} + '/solutions', {course!r} + '/grader', {course!r} + '/tests',
          {str(secret)!r}, '/etc/shadow']:
    try:
        print('SEEN', p, os.listdir(p) if os.path.isdir(p) else open(p).read()[:10])
    except OSError as e:
        print('hidden', p, type(e).__name__)
print('course tree', sorted(os.listdir({course!r})) if os.path.isdir({course!r}) else None,
      os.path.exists({str(tmp_path)!r}))
print('cwd', os.getcwd(), sorted(os.listdir('.')), 'python', sys.executable)""",
        # writes outside the scratch dir, privileges
        f"""for p in [{course!r} + '/course_lib/x.py', {course!r} + '/.venv/x', '/usr/x', '/etc/x']:
    try:
        open(p, 'w').write('x'); print('WROTE', p)
    except OSError as e:
        print('readonly', p, type(e).__name__)
r = subprocess.run('umount /tmp; su -c id root </dev/null', shell=True, capture_output=True, text=True)
print('umount/su rc', r.returncode, 'uid=0' in r.stdout)
open('scratch_ok.txt', 'w').write('fine'); print('scratch writable')""",
    ], tmp_path)
    out = [text(c) for c in nb.cells]
    uid = int(out[0].split()[1])
    assert uid >= 3_000_000 if os.geteuid() == 0 else uid == os.getuid(), out[0]
    assert "CONNECTED" not in out[1] and out[1].count("refused") == 2, out[1]
    assert not got
    assert "SEEN" not in out[2] and out[2].count("hidden") == 5, out[2]
    # neither the course tree nor nbgrader's folder for this student: a private scratch.
    # A venv inside the course (a fresh clone's .venv) keeps its own folder visible, as
    # the path to the interpreter, and nothing else of the course.
    prefix = Path(sys.prefix).resolve()
    venv = [prefix.relative_to(ROOT).parts[0]] if prefix.is_relative_to(ROOT) else None
    assert f"course tree {venv} False" in out[2], out[2]
    assert "cwd /run/grading/work []" in out[2], out[2]
    assert "WROTE" not in out[3] and out[3].count("readonly") == 4, out[3]
    assert "uid=0" not in out[3] and "True" not in out[3]
    assert "scratch writable" in out[3]
    # nothing of the scratch comes back
    assert list((tmp_path / "scratch").iterdir()) == []
    assert not (ROOT / "course_lib" / "x.py").exists()


def test_resource_attacks_are_contained_and_later_cells_still_run(tmp_path):
    nb, elapsed = run([
        "a = 1",
        "x = b'x' * (64 << 30)",  # memory bomb
        "print('after memory', a)",
        """import os
n = 0
try:
    for i in range(1000):
        if os.fork() == 0:
            import time; time.sleep(60); os._exit(0)
        n += 1
except OSError as e:
    print('fork stopped at', n, e.errno)""",
        "print('after fork bomb', a)",
        "while True: pass",  # infinite loop
        "print('after loop', a)",
        """import time
while True:
    try:
        time.sleep(10)
    except KeyboardInterrupt:
        pass""",  # loop swallowing KeyboardInterrupt: kernel restarted, cells replayed
        "print('after swallow', a); b = 2",
        "import os; os._exit(3)",
        "print('after _exit', a, b)",
        "import ctypes; ctypes.string_at(0)",
        "print('after segfault', a, b)",
        "import sys; sys.exit(1)",
        "print('after sys.exit', a, b)",
    ], tmp_path, timeout=5)  # the limit that stops the endless loops: small, to keep this short
    c = nb.cells
    assert errors(c[1]) == ["MemoryError"]
    assert "after memory 1" in text(c[2])
    n = int(text(c[3]).split()[3])
    assert n < 64, text(c[3])
    assert errors(c[3]) == ["ProcessLimit"] and "were killed" in text(c[3])
    assert "after fork bomb 1" in text(c[4])
    assert errors(c[5]) == ["CellTimeoutError"] and "time limit per cell" in text(c[5])
    assert "after loop 1" in text(c[6])
    assert errors(c[7]) == ["CellTimeoutError"]
    assert "after swallow 1" in text(c[8])
    assert errors(c[9]) == ["KernelDied"] and "fresh kernel" in text(c[9])
    assert "after _exit 1 2" in text(c[10])
    assert errors(c[11]) == ["KernelDied"]
    assert "after segfault 1 2" in text(c[12])
    assert errors(c[13]) == ["SystemExit"]
    assert "after sys.exit 1 2" in text(c[14])
    print(f"resource attacks notebook: {elapsed:.1f} s")


def test_output_floods_are_truncated_and_later_cells_still_run(tmp_path):
    """The caps on output, not a time limit, stop these cells: a generous limit per cell
    keeps a busy machine from turning them into timeouts."""
    nb, _ = run([
        "a = 1",
        "import sys\nfor i in range(400_000): sys.stdout.write('x')",
        "print('\\n'.join(map(str, range(300_000))))",
        "print('end', a)",
    ], tmp_path, timeout=120)
    c = nb.cells
    for big in (c[1], c[2]):
        assert not errors(big), text(big)[:300]
        assert "[output truncated" in text(big)
        assert len(text(big)) < 110_000
    assert "end 1" in text(c[3])


def test_file_size_open_files_and_scratch_disk_are_capped(tmp_path):
    """Small budgets configured for this notebook: each stops its attack at the budget
    (the error the kernel sees, the amount it got), and an uncaught one is named."""
    mib = 1 << 20
    nb, _ = run([
        "import errno, os\ndef stopped(e):\n    print('stopped', errno.errorcode[e.errno])",
        f"try:\n    open('big', 'wb').write(b'x' * {3 * mib})\nexcept OSError as e:\n"
        "    stopped(e)\nprint('size', os.path.getsize('big'))",
        "files = []\ntry:\n    while True:\n        files.append(open('big', 'rb'))\n"
        "except OSError as e:\n    stopped(e)\nprint('opened', len(files))\n"
        "for f in files:\n    f.close()",
        "os.remove('big')\nn = 0\ntry:\n    while True:\n"
        f"        with open(f'part{{n}}', 'wb') as fh:\n            fh.write(b'x' * {mib})\n"
        "        n += 1\nexcept OSError as e:\n    stopped(e)\nprint('whole MiB written', n)",
        "import glob\nfor f in glob.glob('part*'):\n    os.remove(f)  # room on the disk\n"
        f"open('too-big', 'wb').write(b'x' * {3 * mib})",
    ], tmp_path, SandboxKernelManager__fsize_limit=2 * mib,
        SandboxKernelManager__nofile_limit=128, SandboxKernelManager__scratch_size=8 * mib)
    out = [text(c) for c in nb.cells]
    assert "stopped EFBIG" in out[1] and f"size {2 * mib}" in out[1], out[1]
    assert "stopped EMFILE" in out[2], out[2]
    assert 0 < int(out[2].split("opened")[1]) < 128, out[2]  # the kernel holds the rest
    assert "stopped ENOSPC" in out[3], out[3]
    assert 4 <= int(out[3].split("written")[1]) <= 8, out[3]  # 8 MiB at most
    assert errors(nb.cells[4]) == ["OSError"], out[4]
    assert "[budget exceeded: file size (2 MiB per file)]" in out[4], out[4]
    assert list((tmp_path / "scratch").iterdir()) == []  # nothing of it comes back


def test_notebook_time_limit_marks_every_remaining_cell(tmp_path):
    """Three 2 s sleeps do not fit in a 5 s notebook: counted in cells, not in wall time
    (a busy machine only makes the limit bite earlier), at most two sleeps finish, the
    cell that meets the limit is stopped, and every cell after it is marked, not run."""
    nb, elapsed = run(["import time; time.sleep(2)", "time.sleep(2)", "time.sleep(2)",
                       "print('never')", "print('never')"], tmp_path, timeout=10,
                      notebook_timeout=5)
    outcomes = [errors(c)[0] if errors(c) else "ran" for c in nb.cells]
    stopped = next((i for i, o in enumerate(outcomes) if o != "ran"), len(outcomes))
    assert stopped <= 2, f"the notebook ran past its time limit: {outcomes}"
    assert outcomes[stopped] in ("CellTimeoutError", "NotExecuted"), outcomes
    assert outcomes[stopped + 1:] == ["NotExecuted"] * (len(outcomes) - stopped - 1), outcomes
    assert "notebook time limit" in text(nb.cells[-1])
    assert "never" not in "".join(text(c) for c in nb.cells if c.outputs and
                                  c.outputs[0].output_type == "stream")
    print(f"notebook time limit: {outcomes}, {elapsed:.1f} s")


def test_the_kernel_imports_only_the_allowlist(tmp_path):
    nb, _ = run([
        "import numpy as np\nfrom course_lib import losses, rnn, activations",
        "losses.softmax(np.zeros(3))",
        "p = rnn.init_params(2, 3, 2); rnn.bptt(p, np.ones((2, 1, 2)), np.zeros((2, 1), int))",
        "rnn.hidden_states(p, np.ones((2, 1, 2)), np.zeros((1, 3)))",
        # what stays: initialisation, validation, activations
        "print(sorted(p), activations.sigmoid(np.zeros(1)))",
        "import inspect; src = inspect.getsource(rnn)\n"
        "print('np.tanh(' in src, 'das[t] @ W_hh' in src, 'def init_params' in src)",
        "import torch", "import pytest", "import nbgrader", "import grader",
        "import matplotlib.pyplot as plt, IPython, zmq; print('allowed ok')",
    ], tmp_path)
    c = nb.cells
    for i in (1, 2, 3):
        assert errors(c[i]) == ["ReferenceUnavailableError"], text(c[i])
    assert "is unavailable while grading" in text(c[1])
    assert "['W_hh', 'W_hy', 'W_xh', 'b_h', 'b_y'] [0.5]" in text(c[4])
    assert "False False True" in text(c[5])  # the algorithms' source is not there either
    for i in (6, 7, 8, 9):
        assert errors(c[i]) == ["ModuleNotFoundError"], text(c[i])
    assert "allowed ok" in text(c[10])



def test_the_language_model_helpers_that_give_answers_away_are_unavailable(tmp_path):
    nb, _ = run([
        "import numpy as np\nfrom course_lib import charlm, data",
        "charlm.perplexity(np.zeros((2, 3)), np.zeros(2, int))",
        "charlm.tempered_softmax(np.zeros(3), 0.5)",
        "charlm.stream_task(np.arange(10), 2, 10)",
        "data.batchify(np.arange(10), 2)",
        # data helpers stay: a split of the ids, one-hot codes
        "train, valid = charlm.split(np.arange(20)); print(len(train), len(valid),"
        " data.one_hot(np.array([1]), 3))",
    ], tmp_path)
    c = nb.cells
    for i in (1, 2, 3, 4):
        assert errors(c[i]) == ["ReferenceUnavailableError"], text(c[i])
    assert "18 2 [[0. 1. 0.]]" in text(c[5]), text(c[5])

def test_views_refuse_an_allowlist_that_gives_a_reference_away():
    from grader.exercises import EXERCISES
    from grader.sandbox import views

    views.check_references(EXERCISES)  # the course's own registry is consistent
    leaky = dict(views.COURSE_LIB_ALLOWED, **{"course_lib.losses": views.ALL})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(views, "COURSE_LIB_ALLOWED", leaky)
        leak = "02_softmax/softmax uses course_lib.losses.softmax"
        with pytest.raises(RuntimeError, match=leak):
            views.check_references(EXERCISES)


@pytest.fixture
def demo_course(tmp_path):
    """A one-student course of the demo assignment."""
    import shutil
    import subprocess

    from grader import synthetic

    env = DEMO_ENV
    root = tmp_path / "course"
    shutil.copytree(DEMO / "solutions", root / "solutions")
    shutil.copy(ROOT / "nbgrader_config.py", root)
    subprocess.run([sys.executable, "-m", "grader", "release", "--root", str(root)], cwd=ROOT,
                   env=env, check=True, capture_output=True)
    a = "00_demo"
    solved = synthetic.solved(root / "solutions" / a / f"{a}.ipynb",
                              root / "exercises" / a / f"{a}.ipynb")
    synthetic.write_submission(root, "ada", a, solved)
    return root, env


def test_grade_refuses_when_no_sandbox_can_be_made(demo_course, tmp_path):
    root, env = demo_course
    empty = tmp_path / "no-tools"
    empty.mkdir()
    proc = run_grade(root, env={**env, "PATH": str(empty)})  # no bwrap on PATH
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "nothing was graded" in proc.stderr and "apt-get install bubblewrap" in proc.stderr
    assert "--no-sandbox" in proc.stderr
    assert not (root / "grader" / "grades.csv").exists()
    assert not (root / "grader" / "autograded").exists()


def test_no_sandbox_is_announced_everywhere(demo_course):
    import csv

    root, env = demo_course
    proc = run_grade(root, "--no-sandbox", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING: grading WITHOUT the sandbox" in proc.stdout
    with open(root / "grader" / "grades.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["sandboxed"] for r in rows] == ["no"] and float(rows[0]["auto_score"]) > 0
    assert "graded without the sandbox" in (root / "grader" / "report" / "index.html").read_text()
