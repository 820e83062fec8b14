"""Collect an LMS download (a zip) into ``grader/submitted/<student>/<a>/<a>.ipynb``.

Three namings are understood, member by member:

    Canvas "Download Submissions"    smithbob_340934_208490284_03_bptt.ipynb
        late work                    smithbob_LATE_340934_208490284_03_bptt.ipynb
        a resubmission               smithbob_340934_208490284_03_bptt-2.ipynb
    Moodle "Download all submissions"  Bob Smith_1234_assignsubmission_file_/03_bptt.ipynb
    this course's own                ada_03_bptt.ipynb   or   ada/03_bptt/03_bptt.ipynb

The zip is untrusted input. Members are streamed one at a time into a private folder
under ``grader/``, with caps on each member's size, the total, the member count and the
compression ratio (the header's sizes are not trusted: the bytes are counted as they
come). Where a file lands depends only on a validated student id and a known assignment,
never on the member's path, and a submission already in ``grader/submitted/`` is never
overwritten (identical: skipped; different: reported). Every file that is not placed is
listed with the reason.

Without a roster, a Canvas student becomes ``<name>-<user id>`` (``smithbob-340934``), a
Moodle student the slug of the full name (``bob-smith``; Moodle's number changes from
one assignment to the next). A roster CSV (``--roster``) maps LMS ids or names to the
course's student ids; see :class:`Roster`. What the LMS said about each student and each
submission (its ids, the late flag) is kept in ``grader/intake.json`` for grades.csv and
the LMS export.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import unicodedata
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .atomic_files import replace_text
from .pipeline import STUDENT_RE, GradingError

RECORD_FILE = "intake.json"
CANVAS = re.compile(r"^(?P<name>[^_/]+?)(?P<late>_LATE)?_(?P<user>\d+)_(?P<sub>\d+)_(?P<file>.+)$")
MOODLE_FOLDER = re.compile(r"^(?P<name>.+)_(?P<user>\d+)_assignsubmission_(?P<kind>[a-z]+)_?$")
RESUBMISSION = re.compile(r"^(?P<stem>.+?)-(?P<attempt>\d{1,3})$")
CHUNK = 1 << 16


@dataclass(frozen=True)
class Limits:
    """Caps on what one zip may unpack to (bytes counted as they are decompressed)."""
    member_bytes: int = 50 * 2**20      # one notebook, outputs and images included
    total_bytes: int = 2 * 2**30        # everything placed from one zip
    members: int = 20_000               # entries in the zip's directory
    ratio: int = 200                    # uncompressed / compressed size, above 1 MiB
    ratio_floor: int = 2**20


@dataclass(frozen=True)
class Identity:
    """Who the LMS says sent a file: ``lms`` is "canvas", "moodle" or "course"."""
    lms: str
    lms_id: str
    name: str


@dataclass
class Candidate:
    """A zip member that names a student and an assignment."""
    info: zipfile.ZipInfo
    who: Identity
    assignment: str
    late: bool = False
    attempt: int = 0            # Canvas' -N suffix on a resubmitted file name
    submission_id: int = 0
    student: str = ""


@dataclass
class IntakeResult:
    zip_name: str
    files: int = 0
    placed: list = field(default_factory=list)       # (student, assignment, member)
    unchanged: list = field(default_factory=list)    # (student, assignment, member)
    unplaced: list = field(default_factory=list)     # (member, reason)

    def summary(self) -> str:
        return (f"{self.zip_name}: {self.files} files, {len(self.placed)} new submissions "
                f"collected, {len(self.unchanged)} already there, {len(self.unplaced)} "
                "not placed")


class Rejected(Exception):
    """A member that is not placed (the message is the reason)."""


# ---------------------------------------------------------------------------- names
def shown(name: str) -> str:
    """A member name as it is safe to print (control and bidi characters escaped)."""
    return name if name.isprintable() else ascii(name)[1:-1]


# letters that Unicode does not decompose into an ASCII letter plus accents
LATIN_EXTRA = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE",
                             "ß": "ss", "đ": "d", "Đ": "D", "ł": "l", "Ł": "L", "þ": "th",
                             "Þ": "Th", "ı": "i"})


def slug(text: str) -> str:
    """ASCII letters, digits and '-' of a person's name: "Zoë O'Brien" -> "zoe-o-brien"."""
    ascii_text = (unicodedata.normalize("NFKD", text.translate(LATIN_EXTRA))
                  .encode("ascii", "ignore").decode())
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:48]


def name_keys(name: str) -> set[str]:
    """Ways an LMS writes one person's name, squashed: "Bob Smith" -> {bobsmith, smithbob}
    (Canvas writes surname then given name)."""
    words = slug(name).split("-")
    return {"".join(words[i:] + words[:i]) for i in range(len(words))} - {""}


def _unsafe_path(parts: list[str]) -> str:
    if not parts or parts[0] == "" or re.match(r"^[A-Za-z]:$", parts[0]):
        return "absolute path"
    if any(p in ("..", ".") for p in parts):
        return "path with '..' or '.' components"
    return ""


def assignment_of(filename: str, assignments: list[str], fixed: str | None):
    """(assignment, resubmission number) an uploaded file name stands for.

    ``03_bptt.ipynb`` -> 03_bptt; ``03_bptt-2.ipynb`` (Canvas renames a resubmitted file)
    -> 03_bptt, attempt 2; ``ada 03_bptt final.ipynb`` -> the one known id it contains;
    otherwise the ``--assignment`` of the run (an LMS download holds one assignment)."""
    known = {a.casefold(): a for a in assignments}
    stem, attempt = filename[: -len(".ipynb")].casefold(), 0
    m = RESUBMISSION.match(stem)
    if m and stem not in known:
        stem, attempt = m["stem"], int(m["attempt"])
    if stem in known:
        return known[stem], attempt
    hits = [a for key, a in known.items() if key in stem]
    if len(hits) == 1:
        return hits[0], attempt
    return fixed, attempt


def classify(info: zipfile.ZipInfo, assignments: list[str], fixed: str | None) -> Candidate:
    """What one zip member is, from its name alone; raises Rejected with the reason."""
    parts = info.filename.replace("\\", "/").split("/")
    if _unsafe_path(parts):
        raise Rejected(f"unsafe member name ({_unsafe_path(parts)})")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise Rejected("a symbolic link, not a file")
    if info.flag_bits & 0x1:
        raise Rejected("encrypted")
    if parts[0] == "__MACOSX":
        raise Rejected("macOS metadata, not a submission")
    base = parts[-1]
    moodle = next((MOODLE_FOLDER.match(p) for p in parts[:-1] if MOODLE_FOLDER.match(p)), None)
    if moodle and moodle["kind"] != "file":
        raise Rejected(f"Moodle {moodle['kind']} submission, not an uploaded notebook")
    if not base.lower().endswith(".ipynb"):
        raise Rejected("not a notebook (.ipynb)")
    canvas = None if moodle else CANVAS.match(base)
    if moodle:
        who = Identity("moodle", moodle["user"], moodle["name"])
        late, sub_id, filename = False, 0, base
    elif canvas:
        who = Identity("canvas", canvas["user"], canvas["name"])
        late, sub_id, filename = bool(canvas["late"]), int(canvas["sub"]), canvas["file"]
    else:
        return _course_named(info, parts, assignments)
    assignment, attempt = assignment_of(filename, assignments, fixed)
    if assignment is None:
        raise Rejected(f"cannot tell which assignment {shown(filename)!r} is for "
                       f"(known: {', '.join(assignments)}): pass --assignment")
    return Candidate(info, who, assignment, late, attempt, sub_id)


def _course_named(info: zipfile.ZipInfo, parts: list[str], assignments: list[str]) -> Candidate:
    """``<student>_<assignment>.ipynb`` or ``<student>/<assignment>/<assignment>.ipynb``."""
    base = parts[-1]
    for a in assignments:
        if base == f"{a}.ipynb" and len(parts) >= 3 and parts[-2] == a:
            student = parts[-3]
        elif base.endswith(f"_{a}.ipynb"):
            student = base[: -len(f"_{a}.ipynb")]
        else:
            continue
        if not STUDENT_RE.match(student):
            raise Rejected(f"student id {shown(student)!r} is not allowed: use letters, "
                           "digits, '.', '_' or '-' (at most 64, starting with a letter or digit)")
        return Candidate(info, Identity("course", "", student), a)
    raise Rejected("not named like a Canvas, Moodle or <student>_<assignment>.ipynb "
                   f"submission (known assignments: {', '.join(assignments)})")


# ---------------------------------------------------------------------------- roster
class Roster:
    """The class list: a CSV with a ``student_id`` column (the id used in grader/) and
    any of ``lms_id`` (Canvas user ID or Moodle participant number), ``name`` (full name
    as the LMS shows it), ``email``, ``sis_user_id``, ``sis_login_id``, ``username``,
    ``id_number``, ``section``. Headers are case-insensitive; spaces count as '_'
    ("SIS User ID" works); other columns are ignored."""

    COLUMNS = ("student_id", "lms_id", "name", "email", "sis_user_id", "sis_login_id",
               "username", "id_number", "section")

    def __init__(self, rows: list[dict], source: str = "roster"):
        self.rows, self.source = rows, source
        self.by_student = {r["student_id"]: r for r in rows}
        self.by_lms_id = {r["lms_id"]: r for r in rows if r["lms_id"]}
        by_name: dict[str, list] = {}
        for r in rows:
            for key in name_keys(r["name"]):
                by_name.setdefault(key, []).append(r)
        self.by_name = by_name

    @classmethod
    def read(cls, path: Path) -> "Roster":
        try:
            with open(path, newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                header = {(h or "").strip().lower().replace(" ", "_"): h
                          for h in reader.fieldnames or []}
                if "student_id" not in header:
                    raise GradingError(
                        f"roster {path}: no student_id column (found: "
                        f"{', '.join(reader.fieldnames or []) or 'nothing'}); add one with "
                        "the id each student has in grader/submitted/")
                rows = [{c: (raw.get(header[c]) or "").strip() if c in header else ""
                         for c in cls.COLUMNS} for raw in reader]
        except (OSError, UnicodeDecodeError) as exc:
            raise GradingError(f"cannot read roster {path}: {exc}") from None
        problems = []
        seen: dict[str, set] = {"student_id": set(), "lms_id": set()}
        for i, r in enumerate(rows, start=2):
            if not STUDENT_RE.match(r["student_id"]):
                problems.append(f"line {i}: student_id {shown(r['student_id'])!r} is not "
                                "allowed (letters, digits, '.', '_', '-')")
            for col in seen:
                if r[col] and r[col] in seen[col]:
                    problems.append(f"line {i}: {col} {r[col]!r} appears twice")
                seen[col].add(r[col])
        if problems:
            raise GradingError(f"roster {path}:\n  " + "\n  ".join(problems[:20]))
        return cls(rows, str(path))

    def student_for(self, who: Identity) -> str:
        """The course's student id of an LMS identity; raises Rejected if not found."""
        if who.lms == "course":
            if who.name in self.by_student:
                return who.name
            raise Rejected(f"student {who.name!r} is not in the roster {self.source}")
        if who.lms_id in self.by_lms_id:
            return self.by_lms_id[who.lms_id]["student_id"]
        matches = {r["student_id"] for key in name_keys(who.name)
                   for r in self.by_name.get(key, [])}
        if len(matches) == 1:
            return matches.pop()
        what = "matches several roster rows" if matches else "is not in the roster"
        raise Rejected(f"{who.lms} student {shown(who.name)!r} (id {who.lms_id}) {what} "
                       f"{self.source}: add a row with lms_id {who.lms_id}")


def default_student(who: Identity) -> str:
    """The student id of an LMS identity when there is no roster."""
    if who.lms == "course":
        return who.name
    if who.lms == "canvas":
        return f"{slug(who.name) or 'canvas'}-{who.lms_id}"
    return slug(who.name) or f"moodle-{who.lms_id}"


# ---------------------------------------------------------------------------- choosing
def choose(candidates: list[Candidate], unplaced: list) -> list[Candidate]:
    """One file per (student, assignment): the latest resubmission (Canvas' -N suffix,
    then the submission id, then the member's time stamp). Two LMS identities that map
    to one student, or two files that cannot be ordered, are reported, not guessed."""
    groups: dict[tuple, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault((c.student, c.assignment), []).append(c)
    chosen = []
    for (student, assignment), group in sorted(groups.items()):
        people = {(c.who.lms, c.who.lms_id, c.who.name) for c in group}
        if len(people) > 1:
            for c in group:
                unplaced.append((c.info.filename, f"{len(people)} different LMS students map "
                                 f"to student id {student!r}: pass --roster to tell them apart"))
            continue
        group.sort(key=lambda c: (c.attempt, c.submission_id, c.info.date_time), reverse=True)
        latest = group[0]
        key = (latest.attempt, latest.submission_id, latest.info.date_time)
        if len(group) > 1 and key == (group[1].attempt, group[1].submission_id,
                                      group[1].info.date_time):
            for c in group:
                unplaced.append((c.info.filename, f"{len(group)} files for {student}/"
                                 f"{assignment} and no way to tell which is the latest"))
            continue
        for c in group[1:]:
            unplaced.append((c.info.filename, f"an older submission; kept "
                             f"{shown(latest.info.filename)}"))
        chosen.append(latest)
    return chosen


# ---------------------------------------------------------------------------- copying
def stream_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, limits: Limits,
                  budget: int) -> tuple[str, int]:
    """Decompress one member into ``dest`` (a new file), counting bytes as they come;
    returns (sha256, size). Raises Rejected past a cap (the file is then removed)."""
    cap = min(limits.member_bytes, budget)
    if info.file_size > cap:
        raise Rejected(f"{info.file_size} bytes, more than the cap of {cap}")
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    h, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out, zf.open(info) as member:
            while chunk := member.read(CHUNK):
                size += len(chunk)
                if size > cap:
                    raise Rejected(f"unpacks to more than the cap of {cap} bytes")
                if size > limits.ratio_floor and size > limits.ratio * max(info.compress_size, 1):
                    raise Rejected(f"compression ratio above {limits.ratio}:1 (a zip bomb?)")
                h.update(chunk)
                out.write(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
        dest.unlink(missing_ok=True)
        raise Rejected(f"cannot be unpacked ({type(exc).__name__}: {exc})") from None
    except Rejected:
        dest.unlink(missing_ok=True)
        raise
    return h.hexdigest(), size


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def place(tmp_file: Path, digest: str, submitted: Path, student: str, assignment: str) -> bool:
    """Link ``tmp_file`` into ``submitted/<student>/<assignment>/<assignment>.ipynb``;
    False if an identical file is already there. Never follows a link, never overwrites."""
    folder = submitted / student / assignment
    for d in (submitted, submitted / student, folder):
        if d.is_symlink() or (d.exists() and not d.is_dir()):
            raise Rejected(f"{d.relative_to(submitted.parent.parent)} is not a plain folder")
        d.mkdir(exist_ok=True)
    dest = folder / f"{assignment}.ipynb"
    if dest.is_symlink() or (dest.exists() and not dest.is_file()):
        raise Rejected(f"grader/submitted/{student}/{assignment}/{assignment}.ipynb is "
                       "not a regular file")
    if dest.exists():
        if _sha256(dest) == digest:
            return False
        raise Rejected(f"{student} already has a different {assignment} submission (move "
                       f"grader/submitted/{student}/{assignment} away to replace it)")
    try:
        os.link(tmp_file, dest)  # fails if dest appeared meanwhile: never overwrites
    except FileExistsError:
        raise Rejected(f"{student} already has a {assignment} submission") from None
    return True


# ---------------------------------------------------------------------------- records
def load_record(root: Path) -> dict:
    """grader/intake.json: {"students": {id: Identity fields}, "submissions":
    {"student/assignment": {"late", "member", "zip", "sha256"}}}."""
    try:
        data = json.loads((root / "grader" / RECORD_FILE).read_text())
    except (OSError, ValueError):
        data = {}
    data.setdefault("students", {})
    data.setdefault("submissions", {})
    return data


def _save_record(root: Path, record: dict) -> None:
    replace_text(root / "grader" / RECORD_FILE,
                 json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False))


def is_late(record: dict, root: Path, student: str, assignment: str) -> bool:
    """True if the LMS marked the submission now in grader/submitted/ as late."""
    entry = record["submissions"].get(f"{student}/{assignment}")
    nb = root / "grader" / "submitted" / student / assignment / f"{assignment}.ipynb"
    return bool(entry and entry.get("late") and nb.is_file() and not nb.is_symlink()
                and _sha256(nb) == entry.get("sha256"))


# ---------------------------------------------------------------------------- run
def collect(root: Path, zip_path: Path, assignments: list[str], roster: Roster | None = None,
            assignment: str | None = None, limits: Limits = Limits(), log=print) -> IntakeResult:
    """Place every submission of an LMS zip; see the module docstring."""
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise GradingError(f"no such zip file: {zip_path}")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise GradingError(f"{zip_path} is not a zip file ({exc}): download it again") from None
    result = IntakeResult(zip_path.name)
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.members:
            raise GradingError(f"{zip_path} has {len(infos)} entries, more than the cap of "
                               f"{limits.members}: is it the LMS download?")
        candidates = []
        for info in infos:
            if info.is_dir():
                continue
            result.files += 1
            try:
                c = classify(info, assignments, assignment)
                c.student = roster.student_for(c.who) if roster else default_student(c.who)
                if not STUDENT_RE.match(c.student):
                    raise Rejected(f"student id {shown(c.student)!r} is not allowed")
                candidates.append(c)
            except Rejected as exc:
                result.unplaced.append((info.filename, str(exc)))
        chosen = choose(candidates, result.unplaced)
        record = load_record(root)
        (root / "grader").mkdir(exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".intake-", dir=root / "grader"))
        budget = limits.total_bytes
        try:
            for n, c in enumerate(chosen):
                key = (c.student, c.assignment, c.info.filename)
                tmp_file = scratch / str(n)
                try:
                    digest, size = stream_member(zf, c.info, tmp_file, limits, budget)
                    fresh = place(tmp_file, digest, root / "grader" / "submitted",
                                  c.student, c.assignment)
                except Rejected as exc:
                    result.unplaced.append((c.info.filename, str(exc)))
                    continue
                finally:
                    tmp_file.unlink(missing_ok=True)
                budget -= size
                (result.placed if fresh else result.unchanged).append(key)
                record["students"][c.student] = asdict(c.who)
                if fresh:
                    record["submissions"][f"{c.student}/{c.assignment}"] = {
                        "late": c.late, "member": c.info.filename, "zip": zip_path.name,
                        "sha256": digest}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            _save_record(root, record)
    log(f"collected {result.summary()}")
    for member, reason in result.unplaced:
        log(f"  not placed: {shown(member)}: {reason}")
    return result
