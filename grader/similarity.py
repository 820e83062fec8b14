"""Copied code, flagged for the instructor (never scored).

The course library's source is public and holds reference implementations of what the
assignments ask for; a notebook that pastes it, or a classmate's answer, passes every
test. So each submission's answer cells (nbgrader solution cells) are compared with
every course_lib module and with the other submissions of the same assignment, using
copydetect's fingerprints (the method of MOSS): the code is tokenised, names are
replaced by placeholders (so renaming variables changes nothing), every 25-character
stretch of that text is hashed, and two documents share the stretches whose hashes
they share. All hashes are kept (a winnowing window of 1): winnowing only saves space,
which a class's notebooks do not need, and its choice of hashes depends on Python's
per-process string hashing, so the shares would change from one run to the next. The exercise's own template code (signatures,
docstrings) is boilerplate and never counts.

A pair is flagged when the shared stretches cover at least ``THRESHOLD`` of one side's
answer code and at least ``MIN_OVERLAP`` tokens (short textbook one-liners are written
alike by honest students). Results go to ``grader/similarity.json``, a note in
grades.csv and a section of the report with the two answers side by side.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import html
import io
import itertools
import json
import os
from pathlib import Path

from .atomic_files import replace_text
from .notebook_cells import nbgrader_cells

THRESHOLD = 0.6
MIN_OVERLAP = 120
NOISE_CHARS = 25      # copydetect's k: shorter shared stretches are noise
RESULT_FILE = "similarity.json"


def cache_file() -> Path:
    """Where course_lib's modules are kept tokenised, by source digest (tokenising is
    the slow part of a run): the user's cache folder, shared by every course root."""
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(home) / "bptt-course" / "similarity-library.json"


def answer_code(path: Path) -> str:
    """The code of a notebook's answer cells (nbgrader ``solution`` code cells), or ""."""
    return "\n\n".join(c["source"] for c in nbgrader_cells(path)
                       if c["cell_type"] == "code" and c["nbgrader"].get("solution"))


def fingerprint(name: str, code: str, boilerplate=()):
    """copydetect's fingerprint of Python source text."""
    from copydetect import CodeFingerprint

    return CodeFingerprint(name + ".py", NOISE_CHARS, 1, boilerplate=list(boilerplate),
                           fp=io.StringIO(code), language="python")


def without(fp, boilerplate):
    """``fp`` (a ``fingerprint`` made with no boilerplate, or its tokenised text alone)
    with the ``boilerplate`` hashes left out: what ``fingerprint`` with that boilerplate
    gives, by copydetect's own code, without tokenising the source again (the slow part;
    course_lib is tokenised once, not once per assignment or per run)."""
    from copydetect.utils import get_document_fingerprints, get_token_coverage

    out = copy.copy(fp)
    out.hashes, out.hash_idx = get_document_fingerprints(fp.filtered_code, fp.k, 1,
                                                         list(boilerplate))
    out.token_coverage = get_token_coverage(out.hash_idx, fp.k, len(fp.filtered_code))
    return out


def compare(a, b) -> tuple[int, float, float]:
    """(shared tokens, share of a's tokens, share of b's tokens)."""
    from copydetect import compare_files

    overlap, (sim_a, sim_b), _ = compare_files(a, b)
    return int(overlap), float(sim_a), float(sim_b)


def library_sources(root: Path) -> dict[str, str]:
    """{"course_lib/<module>.py": source} of the course root's library."""
    lib = root / "course_lib"
    if not lib.is_dir():
        import course_lib

        lib = Path(course_lib.__file__).parent
    return {f"course_lib/{p.name}": p.read_text(encoding="utf-8") for p in sorted(lib.glob("*.py"))}


def library_fingerprints(root: Path) -> dict:
    """{"course_lib/<module>.py": fingerprint} of the course root's library, each with
    only its tokenised text and the text's offsets in the source (``without`` adds the
    hashes). Both are kept in ``cache_file()`` under a digest of the module's source and
    of how it was tokenised: a run tokenises only what no earlier run did (all of it
    when the cache folder cannot be written)."""
    import types

    import numpy as np
    from copydetect import __version__

    path = cache_file()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    cached = cached if isinstance(cached, dict) else {}
    fresh, library = {}, {}
    for name, source in library_sources(root).items():
        key = hashlib.sha256(f"{__version__} {NOISE_CHARS}\n{source}".encode()).hexdigest()
        entry = cached.get(key)
        if not (isinstance(entry, dict) and isinstance(entry.get("text"), str)
                and isinstance(entry.get("offsets"), list)):
            fp = fingerprint(name, source)
            entry = {"text": fp.filtered_code, "offsets": np.asarray(fp.offsets).tolist()}
        fresh[key] = entry
        library[name] = types.SimpleNamespace(
            filtered_code=entry["text"], k=NOISE_CHARS,
            offsets=np.array(entry["offsets"], dtype=np.int64).reshape(-1, 2))
    if fresh != cached:
        with contextlib.suppress(OSError):  # not writable: the next run tokenises again
            replace_text(path, json.dumps(fresh))
    return library


def analyse(root: Path, present: set) -> dict:
    """Compare every submission of ``present`` ({(student, assignment)}); writes and
    returns {assignment: [flagged pair, ...]}, each pair a dict with ``a`` (a student
    or a course_lib file), ``b`` (a student), ``share`` (of the copying side), ``overlap``."""
    library = library_fingerprints(root)
    flagged: dict[str, list] = {}
    by_assignment: dict[str, list] = {}
    for student, assignment in sorted(present):
        by_assignment.setdefault(assignment, []).append(student)
    for assignment, students in by_assignment.items():
        template = answer_code(root / "exercises" / assignment / f"{assignment}.ipynb")
        boiler = fingerprint("template", template).hashes if template.strip() else set()
        lib_fps = {name: without(fp, boiler) for name, fp in library.items()}
        subs = {}
        for s in students:
            code = answer_code(root / "grader" / "submitted" / s / assignment / f"{assignment}.ipynb")
            if code.strip():
                subs[s] = fingerprint(s, code, boiler)
        pairs = []
        for s, fp in subs.items():
            for name, lib_fp in lib_fps.items():
                overlap, share, _ = compare(fp, lib_fp)
                if share >= THRESHOLD and overlap >= MIN_OVERLAP:
                    pairs.append({"a": name, "b": s, "share": round(share, 3), "overlap": overlap})
        for s, t in itertools.combinations(sorted(subs), 2):
            overlap, share_s, share_t = compare(subs[s], subs[t])
            if max(share_s, share_t) >= THRESHOLD and overlap >= MIN_OVERLAP:
                pairs.append({"a": s, "b": t, "share": round(max(share_s, share_t), 3),
                              "overlap": overlap})
        if pairs:
            flagged[assignment] = sorted(pairs, key=lambda p: -p["share"])
    replace_text(root / "grader" / RESULT_FILE, json.dumps(flagged, indent=1, sort_keys=True))
    return flagged


def load(root: Path) -> dict:
    try:
        return json.loads((root / "grader" / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return {}


def notes(flagged: dict) -> dict[tuple[str, str], str]:
    """{(student, assignment): "similar to course_lib/rnn.py (97%); bob (88%)"}."""
    out: dict[tuple[str, str], list] = {}
    for assignment, pairs in flagged.items():
        for p in pairs:
            for me, other in ((p["b"], p["a"]), (p["a"], p["b"])):
                if not me.startswith("course_lib/"):
                    out.setdefault((me, assignment), []).append(f"{other} ({p['share']:.0%})")
    return {k: "similar to " + "; ".join(v) for k, v in out.items()}


def report_section(root: Path) -> str:
    """The report's HTML section: flagged pairs with both answers side by side (all
    student text escaped: the page stays inert)."""
    flagged = load(root)
    if not flagged:
        return ("<h2>Similar answers</h2><p>No pair of answers shares more than "
                f"{THRESHOLD:.0%} of its code with another submission or course_lib.</p>")
    library = library_sources(root)
    parts = ["<h2>Similar answers</h2>",
             f"<p>Pairs whose shared code covers at least {THRESHOLD:.0%} of one side's "
             "answers (names normalised, template code ignored). A flag is for a person to "
             "read, not a verdict: no score was changed.</p>"]
    for assignment, pairs in sorted(flagged.items()):
        for p in pairs:
            def code(who):
                if who.startswith("course_lib/"):
                    return library.get(who, "")
                return answer_code(root / "grader" / "submitted" / who / assignment
                                   / f"{assignment}.ipynb")
            parts.append(
                f"<h3>{html.escape(assignment)}: {html.escape(p['a'])} and "
                f"{html.escape(p['b'])}: {p['share']:.0%} shared ({p['overlap']} tokens)</h3>"
                "<div class='pair' style='display:flex;gap:1em'>"
                + "".join(f"<div style='flex:1;min-width:0'><b>{html.escape(w)}</b>"
                          f"<pre style='overflow:auto;max-height:30em;background:#f6f6f6'>"
                          f"{html.escape(code(w))}</pre></div>" for w in (p["a"], p["b"]))
                + "</div>")
    return "\n".join(parts)
