"""LMS zip intake (grader/intake.py) on real zips shaped like Canvas and Moodle downloads,
the course's own naming, and hostile archives. The grading end to end is in
test_grading_pipeline.py; here nothing is graded, only placed."""
from __future__ import annotations

import csv
import json
import os
import stat
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from grader import intake
from grader.pipeline import GradingError

ASSIGNMENTS = ["01_backprop", "03_bptt"]


def notebook(text: str) -> bytes:
    return json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": text}],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()


def make_zip(path: Path, members: dict, date_times: dict | None = None) -> Path:
    """members: {name: bytes}; a value of ("symlink", target) makes a symlink member."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, (date_times or {}).get(name, (2026, 11, 1, 12, 0, 0)))
            info.compress_type = zipfile.ZIP_DEFLATED
            if isinstance(data, tuple):
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                data = data[1].encode()
            zf.writestr(info, data)
    return path


def submitted(root: Path) -> dict:
    """{relative path: bytes} of everything under grader/submitted/."""
    base = root / "grader" / "submitted"
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*"))
            if p.is_file()}


def collect(root, archive, **kw):
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    result = intake.collect(root, archive, ASSIGNMENTS, log=lines.append, **kw)
    return result, "\n".join(lines)


def test_canvas_download_keeps_latest_resubmission_and_late_flag(tmp_path):
    archive = make_zip(tmp_path / "canvas.zip", {
        "smithbob_340934_208490284_03_bptt.ipynb": notebook("bob first"),
        "smithbob_340934_208490284_03_bptt-1.ipynb": notebook("bob second"),
        "smithbob_340934_208490284_03_bptt-2.ipynb": notebook("bob third"),
        "leeann_LATE_340935_208490290_03_bptt.ipynb": notebook("ann"),
        "müllerjürgen_340936_208490291_my work 03_bptt.ipynb": notebook("jürgen"),
        "nguyenvan_340937_208490292_Untitled.ipynb": notebook("van"),
        "doejane_340938_208490293_03_bptt.py": b"print('not a notebook')",
        "parkjin_340939_208490294_03_BPTT.IPYNB": notebook("jin"),
    })
    result, out = collect(tmp_path, archive)
    files = submitted(tmp_path)
    assert files == {
        "smithbob-340934/03_bptt/03_bptt.ipynb": notebook("bob third"),
        "leeann-340935/03_bptt/03_bptt.ipynb": notebook("ann"),
        "mullerjurgen-340936/03_bptt/03_bptt.ipynb": notebook("jürgen"),
        "parkjin-340939/03_bptt/03_bptt.ipynb": notebook("jin"),
    }
    reasons = dict(result.unplaced)
    assert "older submission" in reasons["smithbob_340934_208490284_03_bptt-1.ipynb"]
    assert "older submission" in reasons["smithbob_340934_208490284_03_bptt.ipynb"]
    assert "pass --assignment" in reasons["nguyenvan_340937_208490292_Untitled.ipynb"]
    assert "not a notebook" in reasons["doejane_340938_208490293_03_bptt.py"]
    assert result.files == 8 and len(result.placed) == 4
    assert "not placed: nguyenvan_340937_208490292_Untitled.ipynb: cannot tell" in out
    record = intake.load_record(tmp_path)
    assert intake.is_late(record, tmp_path, "leeann-340935", "03_bptt")
    assert not intake.is_late(record, tmp_path, "smithbob-340934", "03_bptt")
    assert record["students"]["leeann-340935"] == {"lms": "canvas", "lms_id": "340935",
                                                   "name": "leeann"}
    # a Canvas download holds one assignment: --assignment places the unclear file name
    result, _ = collect(tmp_path, archive, assignment="03_bptt")
    assert [p[0] for p in result.placed] == ["nguyenvan-340937"]
    assert len(result.unchanged) == 4


def test_moodle_download_and_roster(tmp_path):
    members = {
        "Bob Smith_1201_assignsubmission_file_/03_bptt.ipynb": notebook("bob"),
        "Ann Lee_1202_assignsubmission_file_/03_bptt.ipynb": notebook("ann"),
        "Ann Lee_1202_assignsubmission_onlinetext_/onlinetext.html": b"<p>hi</p>",
        "Zoë Ødegård_1203_assignsubmission_file_/bptt answers 03_bptt.ipynb": notebook("zoe"),
        "Carl Nobody_1204_assignsubmission_file_/03_bptt.ipynb": notebook("carl"),
    }
    archive = make_zip(tmp_path / "moodle.zip", members)
    roster = tmp_path / "roster.csv"
    roster.write_text("Student ID,Name,Email,LMS ID\n"
                      "s001,Bob Smith,bob@uni.example,\n"
                      "s002,Ann Lee,ann@uni.example,\n"
                      "s003,Zoe Odegard,zoe@uni.example,1203\n")
    result, out = collect(tmp_path, archive, roster=intake.Roster.read(roster))
    assert set(submitted(tmp_path)) == {f"{s}/03_bptt/03_bptt.ipynb"
                                        for s in ("s001", "s002", "s003")}
    reasons = dict(result.unplaced)
    assert "not in the roster" in reasons["Carl Nobody_1204_assignsubmission_file_/03_bptt.ipynb"]
    assert "onlinetext" in reasons["Ann Lee_1202_assignsubmission_onlinetext_/onlinetext.html"]
    # without a roster: the slug of the full name
    other = tmp_path / "other"
    result, _ = collect(other, archive)
    assert {p[0] for p in result.placed} == {"bob-smith", "ann-lee", "zoe-odegard",
                                             "carl-nobody"}


def test_roster_errors_name_the_line_and_the_fix(tmp_path):
    bad = tmp_path / "r.csv"
    bad.write_text("name,email\nBob,b@x\n")
    with pytest.raises(GradingError, match="no student_id column"):
        intake.Roster.read(bad)
    bad.write_text("student_id,lms_id\n../x,1\nok,2\nok2,2\n")
    with pytest.raises(GradingError) as err:
        intake.Roster.read(bad)
    assert "line 2: student_id '../x'" in str(err.value)
    assert "line 4: lms_id '2' appears twice" in str(err.value)


def test_course_naming_and_no_overwrite(tmp_path):
    archive = make_zip(tmp_path / "own.zip", {
        "export/ada_03_bptt.ipynb": notebook("ada"),
        "grace/01_backprop/01_backprop.ipynb": notebook("grace"),
        "notes.txt": b"not a submission",
    })
    result, _ = collect(tmp_path, archive)
    assert sorted(result.placed) == [("ada", "03_bptt", "export/ada_03_bptt.ipynb"),
                                     ("grace", "01_backprop",
                                      "grace/01_backprop/01_backprop.ipynb")]
    # a second download: identical files are skipped, a different one is reported
    archive2 = make_zip(tmp_path / "own2.zip", {
        "ada_03_bptt.ipynb": notebook("ada changed"),
        "grace_01_backprop.ipynb": notebook("grace"),
    })
    result, out = collect(tmp_path, archive2)
    assert result.placed == [] and [u[0] for u in result.unchanged] == ["grace"]
    assert "ada already has a different 03_bptt submission" in out
    assert submitted(tmp_path)["ada/03_bptt/03_bptt.ipynb"] == notebook("ada")


def test_hostile_members_land_nowhere(tmp_path):
    root = tmp_path / "course"
    canary = tmp_path / "evil_03_bptt.ipynb"
    zeros = b"0" * (8 * 2**20)  # 8 MiB that compress about 1000:1
    archive = make_zip(tmp_path / "hostile.zip", {
        "../evil_03_bptt.ipynb": notebook("escape"),
        "/tmp/abs_03_bptt.ipynb": notebook("absolute"),
        "a/../../up_03_bptt.ipynb": notebook("up"),
        "C:/win_03_bptt.ipynb": notebook("drive"),
        ".._03_bptt.ipynb": notebook("dotdot student"),
        "../03_bptt/03_bptt.ipynb": notebook("dotdot student folder"),
        "ok/../../03_bptt/03_bptt.ipynb": notebook("dotdot student folder, deeper"),
        "..\\..\\back_03_bptt.ipynb": notebook("backslash"),
        "link_03_bptt.ipynb": ("symlink", "/etc/shadow"),
        "bomb_03_bptt.ipynb": zeros,
        "rtl\u202eevil_03_bptt.ipynb": notebook("bidi"),
        "..\u2024_03_bptt.ipynb": notebook("one dot leader"),
        "ok_03_bptt.ipynb": notebook("fine"),
    })
    result, out = collect(root, archive)
    assert submitted(root) == {"ok/03_bptt/03_bptt.ipynb": notebook("fine")}
    assert not canary.exists() and not Path("/tmp/abs_03_bptt.ipynb").exists()
    assert sorted(os.listdir(root)) == ["grader"]
    assert sorted(os.listdir(root / "grader")) == ["intake.json", "submitted"]
    reasons = dict(result.unplaced)
    assert len(reasons) == 12
    for name in ("../evil_03_bptt.ipynb", "a/../../up_03_bptt.ipynb",
                 "..\\..\\back_03_bptt.ipynb", "../03_bptt/03_bptt.ipynb",
                 "ok/../../03_bptt/03_bptt.ipynb"):
        assert "'..'" in reasons[name], name
    assert "absolute" in reasons["/tmp/abs_03_bptt.ipynb"]
    assert "absolute" in reasons["C:/win_03_bptt.ipynb"]
    assert "symbolic link" in reasons["link_03_bptt.ipynb"]
    assert "compression ratio" in reasons["bomb_03_bptt.ipynb"]
    assert "not allowed" in reasons[".._03_bptt.ipynb"]
    assert "not allowed" in reasons["rtl\u202eevil_03_bptt.ipynb"]
    assert "\u202e" not in out and "\\u202e" in out  # printed escaped, never raw


def test_caps_on_size_and_count(tmp_path):
    noise = os.urandom(300_000)  # incompressible
    archive = make_zip(tmp_path / "big.zip", {f"s{i}_03_bptt.ipynb": noise for i in range(5)})
    small = intake.Limits(member_bytes=200_000)
    result, _ = collect(tmp_path / "a", archive, limits=small)
    assert not result.placed and all("cap of 200000" in r for _, r in result.unplaced)
    total = intake.Limits(total_bytes=700_000)
    result, _ = collect(tmp_path / "b", archive, limits=total)
    assert len(result.placed) == 2 and len(result.unplaced) == 3
    with pytest.raises(GradingError, match="5 entries, more than the cap of 4"):
        collect(tmp_path / "c", archive, limits=intake.Limits(members=4))
    (tmp_path / "junk.zip").write_bytes(b"PK not really")
    with pytest.raises(GradingError, match="is not a zip file"):
        collect(tmp_path / "d", tmp_path / "junk.zip")


def test_members_are_streamed_not_held_in_memory(tmp_path):
    """20 incompressible 2 MiB notebooks (40 MiB): Python's peak stays far below."""
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for i in range(20):
            zf.writestr(f"s{i:02d}_03_bptt.ipynb", os.urandom(2 * 2**20))
    tracemalloc.start()
    try:
        result, _ = collect(tmp_path, archive)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(result.placed) == 20
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_two_lms_students_with_one_id_are_not_merged(tmp_path):
    archive = make_zip(tmp_path / "twins.zip", {
        "Sam Lee_1_assignsubmission_file_/03_bptt.ipynb": notebook("sam one"),
        "Sam Lee_2_assignsubmission_file_/03_bptt.ipynb": notebook("sam two"),
    })
    result, _ = collect(tmp_path, archive)
    assert not result.placed
    assert all("pass --roster" in r for _, r in result.unplaced)


def test_roster_csv_written_by_a_spreadsheet(tmp_path):
    """A roster saved by Excel (UTF-8 with BOM, CRLF) reads the same."""
    path = tmp_path / "roster.csv"
    with open(path, "w", newline="", encoding="utf-8-sig") as fh:
        w = csv.writer(fh)
        w.writerow(["student_id", "lms_id", "Name"])
        w.writerow(["s1", "340934", "Bob Smith"])
    roster = intake.Roster.read(path)
    assert roster.student_for(intake.Identity("canvas", "340934", "smithbob")) == "s1"
    assert roster.student_for(intake.Identity("canvas", "999", "smithbob")) == "s1"
