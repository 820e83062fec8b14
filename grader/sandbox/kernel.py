"""The sandboxed kernel: a jupyter_client KernelManager that starts ipykernel inside bubblewrap.

Layout of one kernel's sandbox (nothing is visible unless it is bound here)::

    /usr /etc (+ /bin /lib /lib64 /sbin symlinks or ro-binds)   read-only
    <python base prefix>, <venv>                                 read-only
      every site-packages folder: a tmpfs with only the allowed
      distributions bound back (views.site_binds)                read-only
    /run/grading/lib/course_lib  the allowlisted course_lib view read-only
    /run/grading/work            the working dir: tmpfs, capped   read-write, never read back
    /run/grading/home            HOME: tmpfs, capped              read-write, never read back
    /tmp, /dev/shm               tmpfs, capped                    read-write, never read back
    /proc (new pid namespace), /dev (minimal)
    <run dir>                    connection file (ro) + ipc sockets (size watched)
    $COURSE_CASES_DIR                                             read-only
    $COURSE_RECORD_DIR           the folder read-only; each record file the grader
                                 created in it is bound writable (RLIMIT_FSIZE caps it)

Everything else (the course tree: solutions/, grader/, the gradebook, other students'
folders, the salt; the rest of the temp dir, /root, /home) does not exist inside, and
nothing the kernel writes can reach the host except the record files.
Namespaces: net, pid, ipc, uts (no network; the kernel talks to the grader over ipc
sockets), plus a user namespace when the grader is not root.

Who the kernel runs as:
* grader run as root: a real non-root uid of its own (setpriv, one uid per kernel),
  with all capabilities dropped and no-new-privs;
* grader run as an ordinary user: an unprivileged user namespace (bwrap
  --unshare-user, no capabilities, no nested namespaces); the kernel has the
  instructor's uid but sees none of the instructor's files.
rlimits: address space, processes (counted per user namespace on Linux >= 5.14;
on older kernels the user's current process count is added), file size, open
files, no core dumps. The kernel process's own stdout/stderr go to /dev/null.
"""
from __future__ import annotations

import itertools
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from functools import lru_cache

import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from traitlets import Integer, List, Unicode

from . import views
from .rundir import PREFIX, fresh_dir, run_root

_COUNTER = itertools.count()
# uids handed to kernels when grading as root: far above any real account
UID_BASE = 3_000_000
INSIDE = "/run/grading"  # the sandbox's own folders (they exist only inside)
WORK, HOME, LIB = f"{INSIDE}/work", f"{INSIDE}/home", f"{INSIDE}/lib"

# environment passed into the sandbox (everything else is cleared)
_PASS_ENV = ("LANG", "LC_ALL", "TZ", "NBGRADER_EXECUTION", "PYTHONHASHSEED",
             "COURSE_CASES_DIR", "COURSE_RECORD_DIR", "COURSE_ASSIGNMENT")


def as_root() -> bool:
    return os.geteuid() == 0


def _namespace_flags() -> list[str]:
    # --die-with-parent is all that ends a sandbox whose grading worker is killed: the
    # kernel polls no parent (JPY_PARENT_PID is unset) and its stdio is /dev/null, so
    # without it bwrap, its init and the kernel were seen to outlive a SIGKILLed worker
    flags = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
             "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    if not as_root():
        flags += ["--unshare-user", "--disable-userns"]
    return flags


# a Unix socket's path holds at most 107 bytes (sun_path), and a kernel's sockets are
# <run folder>/k-XXXXXXXX/ipc/k-N (see _async_pre_start_kernel)
SOCKET_PATH_MAX = 107


def _socket_path_problem() -> str | None:
    longest = len(os.fsencode(os.path.join(os.environ.get("COURSE_RUN_DIR") or os.path.join(
        tempfile.gettempdir(), PREFIX + "x" * 8), "k-" + "x" * 8, "ipc", "k-99999")))
    if longest <= SOCKET_PATH_MAX:
        return None
    return (f"the temporary folder {tempfile.gettempdir()} has too long a path for the "
            f"kernels' sockets ({longest} bytes, at most {SOCKET_PATH_MAX}): set TMPDIR "
            "to a folder with a shorter path, e.g. TMPDIR=/tmp")


@lru_cache(maxsize=1)
def problem() -> str | None:
    """None if a sandbox can be made here, else why not and how to fix it."""
    if why := _socket_path_problem():
        return why
    tools = ["bwrap", "prlimit"] + (["setpriv"] if as_root() else [])
    missing = [t for t in tools if shutil.which(t) is None]
    if "bwrap" in missing:
        return ("bubblewrap is not installed: install it (Debian/Ubuntu: sudo apt-get install "
                "bubblewrap; Fedora: sudo dnf install bubblewrap)")
    if missing:
        return (f"{' and '.join(missing)} not found: install util-linux "
                "(Debian/Ubuntu: sudo apt-get install util-linux)")
    try:
        r = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
                            *_namespace_flags(), "--", "true"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not be run ({exc})"
    if r.returncode == 0:
        return None
    why = (r.stderr.strip().splitlines() or ["no message"])[-1]
    if as_root():
        return f"bubblewrap fails here even as root ({why})"
    return (f"bubblewrap cannot create an unprivileged user namespace here ({why}). Fix one "
            "of: allow user namespaces (sudo sysctl -w user.max_user_namespaces=15000; on "
            "older Debian kernels sudo sysctl -w kernel.unprivileged_userns_clone=1; on "
            "Ubuntu 24.04+ sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 "
            "or an AppArmor profile that allows userns for bwrap), or grade as root")


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


def _under(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def lchown_tree(path: str, uid: int, gid: int) -> None:
    """lchown a tree (never follows a symlink)."""
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


def record_files(record_dir: str) -> list[str]:
    """The regular files the grader created in the record dir (symlinks never count)."""
    out = []
    with os.scandir(record_dir) as it:
        for e in it:
            if e.is_file(follow_symlinks=False):
                out.append(e.path)
    return sorted(out)


@lru_cache(maxsize=1)
def _site_layout() -> tuple[list[str], list[str]]:
    """(site dirs to cover, allowed entries), once per process."""
    return views.site_binds()


@lru_cache(maxsize=1)
def _course_lib_view(run_dir: str) -> str:
    return views.course_lib_view(os.path.join(run_dir, "views"))


def _sandbox_layout() -> tuple[str, list[str], list[str]]:
    """(course_lib view folder of this run, site dirs to cover, allowed entries)."""
    return (_course_lib_view(run_root()), *_site_layout())


@lru_cache(maxsize=1)
def _font_cache() -> str | None:
    """matplotlib's font list, built once outside: a kernel that imports matplotlib
    neither rebuilds it (slow) nor warns on stderr (a failure for nbgrader). Found in
    this process, which imports matplotlib for the report anyway; importing its
    font_manager builds the list where there is none yet."""
    try:
        import matplotlib

        folder = matplotlib.get_cachedir()
        names = _font_lists(folder)
        if not names:
            import matplotlib.font_manager  # noqa: F401 - writes the list
            names = _font_lists(folder)
    except (ImportError, OSError):
        return None
    return os.path.join(folder, names[-1]) if names else None


def _font_lists(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith("fontlist") and n.endswith(".json"))


def warm_up() -> None:
    """Work out which site folders the sandbox covers and matplotlib's font list in this
    process now: the local pool's workers, forked from it later, inherit both (each
    worker had spent 1.3 s of CPU on them)."""
    _site_layout()
    _font_cache()


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        parts = platform.release().split(".")
        return (int(parts[0]), int(parts[1].split("-")[0])) >= (major, minor)
    except (ValueError, IndexError):
        return False


def _procs() -> dict[int, int]:
    """{pid: ppid} of every live, non-zombie process."""
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                text = fh.read()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            out[int(name)] = int(fields[1])
    return out


def descendants(pid: int) -> set[int]:
    procs = _procs()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in procs.items() if pp in frontier} - found
        found |= frontier
    return found


def _dir_usage(path: str, max_entries: int) -> tuple[int, int]:
    """(bytes, entries) of a tree, counted without following links, stopping early."""
    total = count = 0
    for root, dirs, files in os.walk(path, followlinks=False):
        for name in dirs + files:
            count += 1
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
            if count > max_entries:
                return total, count
    return total, count


class SandboxKernelClient(AsyncKernelClient):
    """Client whose sockets refuse single messages larger than ``max_message_bytes``.

    ZMQ disconnects a peer that sends a larger message (it reconnects by itself), so a
    flood of huge stream messages never reaches the grader's memory.
    """

    max_message_bytes = Integer(8 * 1024 * 1024).tag(config=True)

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

    All limits are configurable as ``c.SandboxKernelManager.<name>``. ``exceeded``
    names the budget the kernel broke when the manager killed it (else None).
    """

    client_class = Unicode("grader.sandbox.kernel.SandboxKernelClient")

    memory_limit = Integer(4 * 1024**3, help="RLIMIT_AS of the kernel, bytes").tag(config=True)
    nproc_limit = Integer(64, help="RLIMIT_NPROC (processes+threads of the kernel)").tag(
        config=True)
    fsize_limit = Integer(96 * 1024**2, help="RLIMIT_FSIZE (largest file), bytes").tag(
        config=True)
    nofile_limit = Integer(256, help="RLIMIT_NOFILE").tag(config=True)
    scratch_size = Integer(128 * 1024**2, help="size of the working dir tmpfs, bytes").tag(
        config=True)
    tmp_size = Integer(64 * 1024**2, help="size of /tmp, HOME and /dev/shm, bytes each").tag(
        config=True)
    socket_dir_bytes = Integer(1024**2, help="bytes the kernel may leave in its socket dir").tag(
        config=True)
    extra_ro_binds = List(Unicode(), help="more read-only paths to expose").tag(config=True)
    kernel_log = Unicode(
        "", help="file for the kernel's own stdout/stderr (debugging); default /dev/null"
    ).tag(config=True)

    exceeded: str | None = None

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
        why = problem()
        if why:
            raise RuntimeError(f"no grading sandbox: {why}")
        self._sandbox_uid = (UID_BASE + (os.getpid() % 100_000) * 10 + next(_COUNTER) % 10
                             if as_root() else os.getuid())
        self._run_dir = fresh_dir("k-")
        self._sock_dir = os.path.join(self._run_dir, "ipc")
        os.mkdir(self._sock_dir, 0o700)
        self.exceeded = None
        self.transport = "ipc"
        self.ip = os.path.join(self._sock_dir, "k")
        self.connection_file = os.path.join(self._run_dir, "kernel.json")
        return await super()._async_pre_start_kernel(**kw)

    def _nproc(self) -> int:
        if as_root() or _kernel_at_least(5, 14):
            return self.nproc_limit
        # older kernels count every process of the uid, not only this namespace's
        mine = 0
        for p in os.listdir("/proc"):
            try:
                mine += p.isdigit() and os.stat(f"/proc/{p}").st_uid == os.getuid()
            except OSError:  # the process just ended
                pass
        return mine + self.nproc_limit

    def sandbox_argv(self, kernel_cmd: list[str], env: dict) -> list[str]:
        uid = self._sandbox_uid
        view, covered, entries = _sandbox_layout()
        a = ["bwrap", *_namespace_flags(), "--hostname", "sandbox"]
        ro = ["/usr", "/etc", *_python_dirs(), *self.extra_ro_binds]
        if _under(INSIDE, ro) or any(_under(p, [INSIDE]) for p in ro):
            raise RuntimeError(f"{INSIDE} is used on this machine: the sandbox needs it free")
        record = env.get("COURSE_RECORD_DIR")
        cases = env.get("COURSE_CASES_DIR")
        writable = record_files(record) if record else []
        if as_root():
            for p in writable + [self._run_dir, self._sock_dir, self.connection_file]:
                os.lchown(p, uid, uid)
        # parents of host mount points, world-traversable (bwrap would make them 0700)
        points = ro + covered + [p for p in (record, cases, self._run_dir, INSIDE) if p]
        parents = sorted({q for d in points for q in _parents(d)} - {"/tmp"},
                         key=lambda x: (x.count("/"), x))
        a += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size",
              str(self.tmp_size), "--tmpfs", "/tmp"]
        a += ["--perms", "1777", "--size", str(self.tmp_size), "--tmpfs", "/dev/shm"]
        for q in parents:
            if not _under(q, ro + ["/proc", "/dev"]):
                a += ["--perms", "0755", "--dir", q]
        a += _top_level_binds()
        for d in sorted(ro, key=lambda x: (x.count("/"), x)):
            a += ["--ro-bind", d, d]
        for d in covered:  # site-packages: empty, then the allowlist
            a += ["--perms", "0755", "--tmpfs", d]
        for p in entries:
            a += ["--ro-bind", p, p]
        a += ["--perms", "0755", "--size", str(self.tmp_size), "--tmpfs", INSIDE]
        a += ["--ro-bind", view, LIB]
        a += ["--perms", "0777", "--size", str(self.scratch_size), "--tmpfs", WORK]
        a += ["--perms", "0777", "--size", str(self.tmp_size), "--tmpfs", HOME]
        font = _font_cache()
        if font:
            mpl = f"{HOME}/.mpl"
            a += ["--perms", "0777", "--dir", mpl,
                  "--ro-bind", font, f"{mpl}/{os.path.basename(font)}"]
        a += ["--ro-bind", self._run_dir, self._run_dir, "--bind", self._sock_dir, self._sock_dir]
        if cases and os.path.isdir(cases):
            a += ["--ro-bind", cases, cases]
        if record:
            a += ["--ro-bind", record, record]
            for f in writable:
                a += ["--bind", f, f]
        a += ["--chdir", WORK, "--clearenv"]
        inner_env = {
            "PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
            "HOME": HOME,
            "TMPDIR": "/tmp",
            "PYTHONPATH": ":".join([LIB] + covered),
            "IPYTHONDIR": f"{HOME}/.ipython",
            "MPLCONFIGDIR": f"{HOME}/.mpl",
            "MPLBACKEND": "Agg",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "COURSE_SANDBOX": "1",
        }
        for k in _PASS_ENV:
            if env.get(k):
                inner_env.setdefault(k, env[k])
        for k, v in inner_env.items():
            a += ["--setenv", k, v]
        limits = ["prlimit", f"--as={self.memory_limit}", f"--nproc={self._nproc()}",
                  f"--fsize={self.fsize_limit}", f"--nofile={self.nofile_limit}", "--core=0",
                  "--"]
        if as_root():  # drop to the kernel's own uid, after the limits are set
            a += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                  "--", *limits, "setpriv", f"--reuid={uid}", f"--regid={uid}",
                  "--clear-groups", "--no-new-privs", "--inh-caps=-all", "--"]
        else:
            a += ["--cap-drop", "ALL", "--", *limits]
        return a + kernel_cmd

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        env = kw.get("env") or dict(os.environ)
        argv = self.sandbox_argv(list(kernel_cmd), env)
        # bwrap itself needs nothing from the environment but PATH
        kw["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        kw["cwd"] = self._run_dir
        if self.kernel_log:
            log = open(self.kernel_log, "ab")
            kw["stdout"] = log
            kw["stderr"] = subprocess.STDOUT
        else:
            kw["stdout"] = subprocess.DEVNULL
            kw["stderr"] = subprocess.DEVNULL
        kw["stdin"] = subprocess.DEVNULL
        self._record_files = record_files(env["COURSE_RECORD_DIR"]) if env.get(
            "COURSE_RECORD_DIR") else []
        out = await super()._async_launch_kernel(argv, **kw)
        self._watch = threading.Event()
        threading.Thread(target=self._watch_sockets, daemon=True).start()
        return out

    def _sandbox_pid(self) -> int | None:
        proc = getattr(getattr(self, "provisioner", None), "process", None)
        return getattr(proc, "pid", None)

    def _watch_sockets(self) -> None:
        """The socket dir is the one host folder the kernel can create files in: kill
        the kernel when it puts more there than ``socket_dir_bytes``."""
        stop, sock = self._watch, self._sock_dir
        while not stop.wait(0.5):
            used, n = _dir_usage(sock, 64)
            if used > self.socket_dir_bytes or n > 64:
                self.exceeded = "scratch disk"
                pid = self._sandbox_pid()
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                return

    # ------------------------------------------------------------------ strays
    def mark_processes(self) -> None:
        """Remember the sandbox's processes (bwrap, its init, the kernel)."""
        pid = self._sandbox_pid()
        self._baseline = descendants(pid) | {pid} if pid else set()

    def reap_strays(self, rounds: int = 50) -> int:
        """SIGKILL every process the kernel started since ``mark_processes`` (fork
        bombs, background children). Returns how many were killed."""
        pid = self._sandbox_pid()
        if not pid or not getattr(self, "_baseline", None):
            return 0
        killed: set[int] = set()
        for _ in range(rounds):
            strays = descendants(pid) - self._baseline
            if not strays:
                break
            for p in strays:
                try:
                    os.kill(p, signal.SIGKILL)
                    killed.add(p)
                except OSError:
                    pass
        return len(killed)

    # ------------------------------------------------------------------ cleanup
    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        self.release_sandbox()

    def release_sandbox(self) -> None:
        """Give the record files back to the grader's uid; drop the run dir."""
        if getattr(self, "_watch", None):
            self._watch.set()
        if as_root():
            for p in getattr(self, "_record_files", []):
                try:
                    os.lchown(p, os.getuid(), os.getgid())
                except OSError:
                    pass
        run = getattr(self, "_run_dir", None)
        if run:
            shutil.rmtree(run, ignore_errors=True)
            self._run_dir = None


def _parents(path: str) -> list[str]:
    out = []
    q = os.path.dirname(path)
    while q not in ("/", ""):
        out.append(q)
        q = os.path.dirname(q)
    return out
