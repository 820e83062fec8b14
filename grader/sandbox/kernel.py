"""The sandboxed kernel: a jupyter_client KernelManager that starts ipykernel inside bubblewrap.

Layout of one kernel's sandbox (a whitelist: nothing is visible unless bound here)::

    /usr /etc (+ /bin /lib /lib64 /sbin symlinks or ro-binds)   read-only
    <python base prefix>, <venv>                                 read-only
    <course_lib dir>   <- the reference-stub view (stubs.py)     read-only
    /proc (new pid namespace), /dev (minimal), /tmp (tmpfs, size-capped)
    <run dir>          connection file + ipc sockets + HOME       read-write (this kernel only)
    <cwd>              the student's scratch dir                  read-write
    $COURSE_RECORD_DIR                                            read-write (if set)
    $COURSE_CASES_DIR                                             read-only  (if set)

Everything else (solutions/, grader/, the gradebook, other students' folders, the
rest of the temp dir, /root, /home) does not exist inside. Namespaces: net, pid, ipc,
uts (no network at all: the kernel talks to the grader over ipc sockets). Inside, the
kernel runs as a real non-root uid (setpriv, one uid per kernel, so RLIMIT_NPROC counts
only this kernel's processes), with no-new-privs and rlimits on address space,
processes, file size, open files and core dumps. Its own stdout/stderr go to /dev/null.
"""
from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Integer, List, Unicode, default

from . import stubs

_COUNTER = itertools.count()
# uids handed to kernels: UID_BASE + pid-derived slot; far above any real account
UID_BASE = 3_000_000

# environment passed into the sandbox (everything else is cleared)
_PASS_ENV = ("LANG", "LC_ALL", "TZ", "NBGRADER_EXECUTION", "PYTHONHASHSEED")
_PASS_ENV_PREFIXES = ("COURSE_",)


def bwrap_available() -> bool:
    return shutil.which("bwrap") is not None and shutil.which("setpriv") is not None


def _top_level_binds() -> list[str]:
    args: list[str] = []
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    return args


def _python_dirs() -> list[str]:
    """Directories of the interpreter, its stdlib and the venv (real paths)."""
    paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), sys.prefix}
    exe = os.path.realpath(sys.executable)
    paths.add(os.path.dirname(os.path.dirname(exe)))
    return sorted(p for p in paths if not p.startswith("/usr/") and os.path.isdir(p))


def chown_tree(path: str | os.PathLike, uid: int, gid: int) -> None:
    """lchown a tree (never follows symlinks a submission may have planted)."""
    path = os.fspath(path)
    try:
        os.lchown(path, uid, gid)
    except FileNotFoundError:
        return
    for root, dirs, files in os.walk(path, followlinks=False):
        for name in dirs + files:
            try:
                os.lchown(os.path.join(root, name), uid, gid)
            except OSError:
                pass


class SandboxKernelClient(AsyncKernelClient):
    """Client whose sockets refuse single messages larger than ``max_message_bytes``.

    ZMQ disconnects a peer that sends a larger message (it reconnects by itself), so a
    flood of huge stream messages never reaches the grader's memory.
    """

    max_message_bytes = Integer(32 * 1024 * 1024).tag(config=True)

    def _create_connected_socket(self, channel, identity=None):
        url = self._make_url(channel)
        from jupyter_client.connect import channel_socket_types

        sock = self.context.socket(channel_socket_types[channel])
        sock.linger = 1000
        if identity:
            sock.identity = identity
        if channel in ("iopub", "shell"):
            sock.setsockopt(zmq.MAXMSGSIZE, int(self.max_message_bytes))
        sock.connect(url)
        return sock


class SandboxKernelManager(AsyncKernelManager):
    """AsyncKernelManager whose kernels run in bubblewrap (see the module docstring).

    All limits are configurable as ``c.SandboxKernelManager.<name>``.
    """

    client_class = Unicode("grader.sandbox.kernel.SandboxKernelClient")

    memory_limit = Integer(4 * 1024**3, help="RLIMIT_AS of the kernel, bytes").tag(config=True)
    nproc_limit = Integer(64, help="RLIMIT_NPROC (processes+threads of the kernel's uid)").tag(
        config=True
    )
    fsize_limit = Integer(256 * 1024**2, help="RLIMIT_FSIZE, bytes").tag(config=True)
    nofile_limit = Integer(256, help="RLIMIT_NOFILE").tag(config=True)
    tmp_size = Integer(256 * 1024**2, help="size of the private /tmp tmpfs, bytes").tag(config=True)
    stub_course_lib = Bool(
        True, help="bind the reference-stub view of course_lib over the real one"
    ).tag(config=True)
    assignment = Unicode(
        "", help="assignment whose references are stubbed ('' = all graded exercises)"
    ).tag(config=True)
    extra_ro_binds = List(Unicode(), help="more read-only paths to expose").tag(config=True)
    kernel_log = Unicode(
        "", help="file for the kernel's own stdout/stderr (debugging); default /dev/null"
    ).tag(config=True)
    run_root = Unicode(help="where per-kernel run dirs (sockets, connection file) go").tag(
        config=True
    )

    @default("run_root")
    def _run_root_default(self):
        return os.path.join(tempfile.gettempdir(), "bptt-sandbox")

    @default("transport")
    def _transport_default(self):
        return "ipc"

    # the kernelspec is built here, never looked up: nothing to install
    @property
    def kernel_spec(self):  # type: ignore[override]
        if self._kernel_spec is None:
            self._kernel_spec = KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name="Python 3 (grading sandbox)",
                language="python",
                interrupt_mode="message",
                env={},
            )
        return self._kernel_spec

    @property
    def ipykernel(self) -> bool:
        return True

    # ------------------------------------------------------------------ launch
    async def _async_pre_start_kernel(self, **kw):
        os.makedirs(self.run_root, mode=0o711, exist_ok=True)
        os.chmod(self.run_root, 0o711)
        self._sandbox_uid = UID_BASE + (os.getpid() % 100_000) * 10 + next(_COUNTER) % 10
        self._run_dir = tempfile.mkdtemp(prefix="k-", dir=self.run_root)
        os.chmod(self._run_dir, 0o700)
        self.transport = "ipc"
        self.ip = os.path.join(self._run_dir, "ipc")
        self.connection_file = os.path.join(self._run_dir, "kernel.json")
        return await super()._async_pre_start_kernel(**kw)

    def sandbox_argv(self, kernel_cmd: list[str], cwd: str, env: dict) -> list[str]:
        uid = self._sandbox_uid
        run = self._run_dir
        a = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
             "--unshare-cgroup-try", "--die-with-parent", "--new-session",
             "--hostname", "sandbox"]
        binds: list[tuple[str, str]] = [("--ro-bind", "/usr"), ("--ro-bind", "/etc")]
        binds += [("--ro-bind", p) for p in _python_dirs()]
        binds += [("--ro-bind", p) for p in self.extra_ro_binds]
        overlay: list[tuple[str, str, str]] = []
        if self.stub_course_lib:
            assignment = self.assignment or stubs.infer_assignment(cwd)
            target, view = stubs.course_lib_binding(assignment)
            if target:
                overlay.append(("--ro-bind", view, target))
        cases = env.get("COURSE_CASES_DIR")
        if cases and os.path.isdir(cases):
            binds.append(("--ro-bind", os.path.realpath(cases)))
        record = env.get("COURSE_RECORD_DIR")
        if record:
            os.makedirs(record, exist_ok=True)
            record = os.path.realpath(record)
            chown_tree(record, uid, uid)
            binds.append(("--bind", record))
        if cwd:
            chown_tree(cwd, uid, uid)
            binds.append(("--bind", cwd))
        chown_tree(run, uid, uid)
        binds.append(("--bind", run))
        # parents of mount points, created world-traversable (bwrap would make them 0700)
        dests = [d for _, d in binds] + [t for _, _, t in overlay]
        parents: set[str] = set()
        for d in dests:
            q = os.path.dirname(d)
            while q not in ("/", ""):
                parents.add(q)
                q = os.path.dirname(q)
        mounted = [d for _, d in binds] + ["/proc", "/dev"]
        a += ["--proc", "/proc", "--dev", "/dev",
              "--perms", "1777", "--size", str(self.tmp_size), "--tmpfs", "/tmp"]
        for q in sorted(parents, key=lambda x: (x.count("/"), x)):
            if q == "/tmp" or any(q == m or q.startswith(m + "/") for m in mounted):
                continue
            a += ["--perms", "0755", "--dir", q]
        a += _top_level_binds()
        for kind, d in sorted(binds, key=lambda b: (b[1].count("/"), b[1])):
            a += [kind, d, d]
        for kind, src, d in overlay:
            a += [kind, src, d]
        if cwd:
            a += ["--chdir", cwd]
        # environment: cleared, then a whitelist
        a += ["--clearenv"]
        venv_bin = os.path.dirname(sys.executable)
        home = os.path.join(run, "home")
        os.makedirs(home, exist_ok=True)
        os.lchown(home, uid, uid)
        inner_env = {
            "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": home,
            "TMPDIR": "/tmp",
            "IPYTHONDIR": os.path.join(home, ".ipython"),
            "MPLCONFIGDIR": os.path.join(home, ".mpl"),
            "MPLBACKEND": "Agg",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "COURSE_SANDBOX": "1",
        }
        if env.get("PYTHONPATH"):
            inner_env["PYTHONPATH"] = env["PYTHONPATH"]
        for k, v in env.items():
            if k in _PASS_ENV or k.startswith(_PASS_ENV_PREFIXES):
                inner_env.setdefault(k, v)
        for k, v in inner_env.items():
            a += ["--setenv", k, v]
        _seed_matplotlib_cache(os.path.join(home, ".mpl"), uid)
        # limits, then drop to the kernel's own uid, then the kernel
        a += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--"]
        a += ["prlimit", f"--as={self.memory_limit}", f"--nproc={self.nproc_limit}",
              f"--fsize={self.fsize_limit}", f"--nofile={self.nofile_limit}", "--core=0", "--"]
        a += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
              "--no-new-privs", "--inh-caps=-all", "--"]
        return a + kernel_cmd

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        env = kw.get("env") or dict(os.environ)
        cwd = kw.get("cwd") or os.getcwd()
        cwd = os.path.realpath(cwd)
        kw["cwd"] = cwd
        argv = self.sandbox_argv(list(kernel_cmd), cwd, env)
        # bwrap itself needs nothing from the environment but PATH
        kw["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if self.kernel_log:
            log = open(self.kernel_log, "ab")
            kw["stdout"] = log
            kw["stderr"] = subprocess.STDOUT
        else:
            kw["stdout"] = subprocess.DEVNULL
            kw["stderr"] = subprocess.DEVNULL
        kw["stdin"] = subprocess.DEVNULL
        self._sandbox_cwd = cwd
        self._sandbox_record = env.get("COURSE_RECORD_DIR")
        return await super()._async_launch_kernel(argv, **kw)

    # ------------------------------------------------------------------ strays
    def reap_strays(self, rounds: int = 50) -> int:
        """SIGKILL every process of this kernel's uid except the kernel itself (fork
        bombs, background children). Returns how many were killed."""
        uid = getattr(self, "_sandbox_uid", None)
        if uid is None:
            return 0
        killed: set[int] = set()
        for _ in range(rounds):
            procs = _procs_of_uid(uid)
            strays = [pid for pid, (ppid, state) in procs.items()
                      if ppid in procs and state != "Z"]
            if not strays:
                break
            for pid in strays:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except OSError:
                    pass
        return len(killed)

    # ------------------------------------------------------------------ cleanup
    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        self.release_sandbox()

    def release_sandbox(self) -> None:
        """Give the scratch and record dirs back to the grader's uid; drop the run dir."""
        me_u, me_g = os.getuid(), os.getgid()
        for p in (getattr(self, "_sandbox_cwd", None), getattr(self, "_sandbox_record", None)):
            if p:
                chown_tree(p, me_u, me_g)
        run = getattr(self, "_run_dir", None)
        if run:
            shutil.rmtree(run, ignore_errors=True)
            self._run_dir = None


def _seed_matplotlib_cache(dest: str, uid: int) -> None:
    """Copy a pre-built matplotlib font cache in, so importing matplotlib in the kernel
    neither rebuilds it (slow) nor warns on stderr (which nbgrader counts as a failure)."""
    src = _mpl_cache()
    os.makedirs(dest, exist_ok=True)
    if src:
        for name in os.listdir(src):
            if name.startswith("fontlist"):
                shutil.copy2(os.path.join(src, name), os.path.join(dest, name))
    chown_tree(dest, uid, uid)


_MPL_CACHE: list = []


def _mpl_cache() -> str | None:
    if _MPL_CACHE:
        return _MPL_CACHE[0]
    d = os.path.join(stubs.cache_root(), "mpl")
    if not any(n.startswith("fontlist") for n in (os.listdir(d) if os.path.isdir(d) else [])):
        os.makedirs(d, exist_ok=True)
        try:
            subprocess.run(
                [sys.executable, "-c", "import matplotlib.font_manager"],
                env={**os.environ, "MPLCONFIGDIR": d},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=False,
            )
        except Exception:  # noqa: BLE001 - a missing cache only costs time
            pass
    ok = any(n.startswith("fontlist") for n in os.listdir(d))
    _MPL_CACHE.append(d if ok else None)
    return _MPL_CACHE[0]


def _procs_of_uid(uid: int) -> dict[int, tuple[int, str]]:
    """{pid: (ppid, state)} of the processes whose real uid is ``uid``."""
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as fh:
                text = fh.read()
        except OSError:
            continue
        ruid = ppid = None
        state = "?"
        for line in text.splitlines():
            if line.startswith("State:"):
                state = line.split()[1]
            elif line.startswith("Uid:"):
                ruid = int(line.split()[1])
            elif line.startswith("PPid:"):
                ppid = int(line.split()[1])
        if ruid == uid and ppid is not None:
            out[int(name)] = (ppid, state)
    return out
