"""A throw-away PostgreSQL server for the tests (the ``postgresql_url`` fixture).

Debian's ``postgresql`` package puts its server programs in
/usr/lib/postgresql/<version>/bin (not on PATH); ``initdb`` makes a cluster in a
temporary folder and ``pg_ctl`` runs it on 127.0.0.1, on a free port, with its socket
in that folder, so it never meets a cluster the package itself may have started.
PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` system
user (the package creates it) and owns the folder; as anyone else it runs as that user.

Connections from 127.0.0.1 need a password (scram-sha-256), so the course is tested
with a gradebook URL that holds one, as a real deployment has.

A guard process stops the server when the tests end without stopping it (killed): it
waits for the end of a pipe that only the tests' process holds open.
"""
from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

INSTALL_HINT = ("PostgreSQL's server programs are missing: `make test` installs them "
                "(or: apt-get install postgresql)")
USER = "grader"  # the superuser of the test cluster (initdb -U)
# the guard: the pipe's end (EOF: the tests' process is gone or done), then the server
GUARD = ("import shutil, subprocess, sys; sys.stdin.buffer.read(); "
         "subprocess.run(sys.argv[2:], capture_output=True, timeout=120); "
         "shutil.rmtree(sys.argv[1], ignore_errors=True)")


def server_bindir() -> Path:
    """The bin folder of the newest PostgreSQL server installed, else of a ``pg_ctl`` on
    PATH; RuntimeError naming the install command when there is none."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")]
    found.sort(key=lambda b: [int(n) for n in re.findall(r"\d+", b.parent.name)])
    if found:
        return found[-1]
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb", path=str(Path(on_path).parent)):
        return Path(on_path).parent
    raise RuntimeError(INSTALL_HINT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One cluster in a temporary folder: ``start()``, ``new_database()`` (a URL),
    ``stop()`` (the folder is removed)."""

    def __init__(self) -> None:
        self.bindir = server_bindir()
        self.folder = Path(tempfile.mkdtemp(prefix="bptt-pg-"))
        self.data = self.folder / "data"
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self._count = 0
        self._guard_pipe: int | None = None
        # pg_ctl and initdb refuse root: run them as the package's system user
        self._as_user = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("the tests run as root and there is no `postgres` "
                                   f"system user to run the server as. {INSTALL_HINT}") from None
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _command(self, program: str, *args: str) -> list[str]:
        return [*self._as_user, str(self.bindir / program), *args]

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self._command(*args), cwd=self.folder, capture_output=True,
                              text=True, timeout=120)

    def _write(self, name: str, text: str) -> Path:
        """A file in the folder, owned by the server's user."""
        path = self.folder / name
        path.write_text(text)
        path.chmod(0o600)
        st = self.folder.stat()
        os.chown(path, st.st_uid, st.st_gid)
        return path

    def start(self) -> None:
        pwfile = self._write("pwfile", self.password + "\n")
        done = self._run("initdb", "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
                         "--auth-local=trust", "--auth-host=scram-sha-256",
                         "-E", "UTF8", "--locale=C", "--no-sync")
        pwfile.unlink()
        if done.returncode:
            raise RuntimeError(f"initdb failed:\n{done.stdout}{done.stderr}")
        self.port = free_port()
        # durability is the server's job in production; a test cluster skips the fsyncs
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.folder}'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        log = self.folder / "server.log"
        done = self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(log), "-w",
                         "-t", "60")
        if done.returncode:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}{done.stderr}{tail}")
        read, self._guard_pipe = os.pipe()
        subprocess.Popen([sys.executable, "-c", GUARD, str(self.folder),
                          *self._command(*self._stop_args())], cwd=self.folder, stdin=read,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        os.close(read)

    def _stop_args(self) -> tuple:
        return ("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")

    def stop(self) -> None:
        if self.port:
            self._run(*self._stop_args())
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._guard_pipe is not None:
            os.close(self._guard_pipe)  # the guard wakes, finds nothing to stop, and ends
            self._guard_pipe = None

    def url(self, database: str, password: str | None = None) -> str:
        """The SQLAlchemy URL of ``database`` (psycopg 3 driver)."""
        pw = self.password if password is None else password
        return f"postgresql+psycopg://{USER}:{pw}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create a new empty database; its URL."""
        import psycopg

        self._count += 1
        name = f"gradebook_{self._count}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER,
                             password=self.password, dbname="postgres",
                             autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
