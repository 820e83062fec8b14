"""The gradebook is never lost: a ``grade`` run works on a gradebook that has a copy.

``protected(root, state_path)`` wraps the part of a run that writes the gradebook:

* before: the gradebook must be readable (``PRAGMA integrity_check``); a damaged or
  missing one is replaced by the last copy, and the run state (grading_state.json)
  goes back with it, so every submission graded after that copy is graded again.
* whenever the gradebook passes the check (before and after the run), an online copy
  (SQLite's backup API, safe while another process has the file open) is written to
  ``grader/backup/gradebook.db``, with the run state beside it;
* after: a run that failed (an exception, Ctrl-C) or left the gradebook damaged gets
  the copy back the same way.

A run killed outright (SIGKILL, power cut) cannot restore anything itself: SQLite's
journal rolls back the unfinished write when the file is next opened, and the next
run's check restores the copy if the file is damaged anyway. A readable gradebook is
kept after a kill or a failure, with the grades of every submission that finished, so
the re-run grades only what had not finished.

Only SQLite gradebooks are files this process can copy. A server database
(``COURSE_DB_URL=postgresql://...``) commits each write in a transaction, survives a
killed client, and is out of the sandboxed kernels' reach (they have no network); back
it up with the server's own tools (``pg_dump`` before a grading session, or continuous
archiving). For it ``protected`` checks that the server answers (a clear error, before
anything is written, when it does not) and creates nbgrader's tables in this one
process, before any worker starts: nbgrader's ``Gradebook()`` creates them on first
use, and several processes doing that at once on an empty database fail. Every path
here is fixed by the course configuration, none by a submission.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
from pathlib import Path

from . import nbapi


def db_url(root: Path) -> str:
    """The course's gradebook URL (``COURSE_DB_URL`` or db_url in nbgrader_config.py)."""
    return nbapi.load_config(root).CourseDirectory.db_url


def sqlite_file(root: Path) -> Path | None:
    """The gradebook's file when the course's db_url is SQLite on disk, else None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not (root / "nbgrader_config.py").is_file():
        return None  # not a course root: the run stops before any gradebook is opened
    try:
        url = make_url(db_url(root))
    except ArgumentError:
        return None  # not a URL: opening the gradebook says so (``unusable``)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).absolute()


def identity(root: Path) -> str:
    """Which gradebook the course writes, as the run state records it: the SQLite file
    relative to the course root (the course folder may move), or the server's URL
    without its password."""
    from sqlalchemy.engine import make_url

    db = sqlite_file(root)
    if db is not None:
        with contextlib.suppress(ValueError):
            return "sqlite:" + db.relative_to(Path(root).resolve()).as_posix()
        return f"sqlite:{db}"
    return make_url(db_url(root)).render_as_string(hide_password=True)


# what a server's refusal means (a pattern of psycopg's message), and what fixes it
FIXES = [
    (r'database ".*" does not exist', "create the database, e.g. `createdb -h {host} -p "
     "{port} -U {user} {database}` (or CREATE DATABASE {database} OWNER {user};), or "
     "correct its name in the URL"),
    (r'role ".*" does not exist', "create the user on the server (createuser), or correct "
     "the user name in the URL"),
    (r"authentication failed|no password supplied", "correct the user name or password in "
     "the URL (or in ~/.pgpass)"),
    (r"refused|no such file or directory", "start the server, or correct the host and port "
     "in the URL"),
    (r"resolve host|name or service not known", "correct the host name in the URL"),
    (r"timeout|timed out", "check that the server runs and that this machine may reach it"),
]
SETTING = "the URL is COURSE_DB_URL, or db_url in nbgrader_config.py"


def unusable(url: str, exc: BaseException) -> str:
    """Why the gradebook at ``url`` cannot be opened and how to fix it. The URL is shown
    with its password masked, and the password never appears in the reason."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"the gradebook URL is not a database URL ({SETTING})"
    shown = parsed.render_as_string(hide_password=True)
    if isinstance(exc, ImportError):
        return (f"the gradebook {shown} needs the Python driver {exc.name!r}, which is not "
                "installed: for PostgreSQL write the URL as postgresql+psycopg://... (the "
                f"course installs psycopg), or install that driver ({SETTING})")
    reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:400]
    if parsed.password:
        reason = reason.replace(str(parsed.password), "***")
    fix = next((f for pattern, f in FIXES if re.search(pattern, reason, re.I)),
               "check the server and the URL")
    fix = fix.format(host=parsed.host or "localhost", port=parsed.port or 5432,
                     user=parsed.username or "USER", database=parsed.database)
    return f"cannot open the gradebook {shown}: {reason}\n  to fix: {fix}\n  ({SETTING})"


def connect(root: Path):
    """nbgrader's ``Gradebook`` of the course (use it in a ``with``); a GradingError
    saying what is wrong and how to fix it when the database cannot be opened."""
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SQLAlchemyError

    from .pipeline import GradingError

    url = db_url(root)
    try:
        return Gradebook(url)
    except (SQLAlchemyError, ImportError) as exc:
        raise GradingError(unusable(url, exc)) from None


def create_schema(root: Path) -> bool:
    """Make sure a server gradebook has nbgrader's tables (one process creates them);
    True when they were there already. GradingError when the server cannot be used."""
    from nbgrader.api import Base
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.exc import SQLAlchemyError

    from .pipeline import GradingError

    url = db_url(root)
    try:
        engine = create_engine(url)
        try:
            with engine.connect() as con:
                tables = set(inspect(con).get_table_names())
        finally:
            engine.dispose()
    except (SQLAlchemyError, ImportError) as exc:
        raise GradingError(unusable(url, exc)) from None
    existed = set(Base.metadata.tables) <= tables
    if not existed:
        try:
            new_gradebook(url)
        except SQLAlchemyError as exc:
            raise GradingError(unusable(url, exc)) from None
    return existed


def new_gradebook(url: str) -> None:
    """Give the empty database at ``url`` (a SQLite file is created) nbgrader's tables
    and schema version, as nbgrader's ``Gradebook()`` does for a new one, but with the
    version (the head of nbgrader's own alembic scripts) read in this process: nbgrader
    starts a Python process running ``alembic heads`` for it, 1.7 s of CPU."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from nbgrader.api import Base
    from nbgrader.dbutil import ALEMBIC_DIR
    from sqlalchemy import create_engine, inspect, text

    config = Config()
    config.set_main_option("script_location", ALEMBIC_DIR)
    head = ScriptDirectory.from_config(config).get_current_head()
    engine = create_engine(url)
    try:
        Base.metadata.create_all(bind=engine)
        with engine.begin() as con:
            if inspect(con).has_table("alembic_version"):
                return  # stamped already (a server gradebook that had part of its tables)
            con.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            con.execute(text("INSERT INTO alembic_version (version_num) VALUES (:head)"),
                        {"head": head})
    finally:
        engine.dispose()


def problem(db: Path) -> str:
    """Why ``db`` is not a usable gradebook ('' when it is)."""
    if not db.is_file() or db.is_symlink():
        return "the file is missing" if not os.path.lexists(db) else "not a regular file"
    try:
        with contextlib.closing(sqlite3.connect(db)) as con:
            rows = con.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return "" if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:3])


def sqlite_copy(src: Path, dest: Path) -> None:
    """An online SQLite copy of ``src`` into ``dest``, replaced atomically."""
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(src)) as s, \
            contextlib.closing(sqlite3.connect(tmp)) as d:
        s.backup(d)
    for stale in (dest.with_name(dest.name + "-journal"), dest.with_name(dest.name + "-wal")):
        stale.unlink(missing_ok=True)  # a journal of the old file must not touch the copy
    os.replace(tmp, dest)


def _backups(db: Path, state_path: Path) -> tuple[Path, Path]:
    """Where the copies live: a ``backup`` folder beside each file (grader/backup/)."""
    return db.parent / "backup" / db.name, state_path.parent / "backup" / state_path.name


def restore(db: Path, state_path: Path) -> bool:
    """Put the last copy of the gradebook and its run state back; False if no usable
    copy exists."""
    db_copy, state_copy = _backups(db, state_path)
    if problem(db_copy):
        return False
    sqlite_copy(db_copy, db)
    if state_copy.is_file():
        shutil.copyfile(state_copy, state_path)
    else:
        state_path.unlink(missing_ok=True)
    return True


def _keep_copy(db: Path, state_path: Path) -> None:
    db_copy, state_copy = _backups(db, state_path)
    db_copy.parent.mkdir(exist_ok=True)
    state_copy.parent.mkdir(exist_ok=True)
    sqlite_copy(db, db_copy)
    if state_path.is_file():
        shutil.copyfile(state_path, state_copy)
    else:
        state_copy.unlink(missing_ok=True)


@contextlib.contextmanager
def protected(root: Path, state_path: Path, log=print):
    """Check and copy, run the body, check and copy again; restore the copy when the
    gradebook is unusable. A server gradebook is checked and given its tables instead
    (see the module doc)."""
    from .pipeline import GradingError

    db = sqlite_file(root)
    if db is None:
        if (root / "nbgrader_config.py").is_file() and not create_schema(root):
            state_path.unlink(missing_ok=True)  # a new gradebook: grade everything into it
        yield
        return
    why = problem(db)
    if why:
        if restore(db, state_path):
            log(f"warning: the gradebook {db} was unusable ({why}): restored the copy made "
                "by the last run; submissions graded since then are graded again")
        elif os.path.lexists(db):
            raise GradingError(
                f"the gradebook {db} is damaged ({why}) and there is no usable copy of it "
                f"({_backups(db, state_path)[0].name}): restore it from your own backup, or "
                "move it away to start a new gradebook (every submission is then graded again)")
        else:  # a new gradebook: every submission is graded into it
            state_path.unlink(missing_ok=True)
    if db.is_file():
        _keep_copy(db, state_path)
    try:
        yield
    except BaseException:
        why = problem(db)
        if why and restore(db, state_path):
            log(f"warning: this run failed and left the gradebook unusable ({why}): "
                "restored the copy made before it")
        raise
    why = problem(db)
    if why:
        if restore(db, state_path):
            raise GradingError(f"the gradebook was damaged during this run ({why}): "
                               "restored the copy made before it; run grade again")
        raise GradingError(f"the gradebook {db} was damaged during this run ({why}) and "
                           "no copy could be restored")
    _keep_copy(db, state_path)
