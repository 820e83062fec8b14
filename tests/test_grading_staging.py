"""grader.staging: nbgrader is handed a copy of the notebook, never the student's folder."""
from __future__ import annotations

import os

import pytest

from grader import staging


def _submission(tmp_path, student="ada", assignment="02_softmax"):
    folder = tmp_path / "submitted" / student / assignment
    folder.mkdir(parents=True)
    return folder


def test_only_the_notebook_and_timestamp_are_copied(tmp_path):
    folder = _submission(tmp_path)
    (folder / "02_softmax.ipynb").write_text('{"cells": []}')
    (folder / "timestamp.txt").write_text("2026-11-30 12:00:00 UTC")
    secret = tmp_path / "secret.txt"
    secret.write_text("instructor only")
    os.symlink(secret, folder / "secret.txt")
    os.symlink("..", folder / "up")
    os.mkfifo(folder / "pipe")  # a reader that followed it would block forever
    (folder / "notes.md").write_text("my notes")
    staged = tmp_path / "staged"
    ignored = staging.stage(tmp_path / "submitted", staged, "ada", "02_softmax")
    assert ignored == ["notes.md", "pipe", "secret.txt", "up"]
    out = staged / "ada" / "02_softmax"
    assert sorted(p.name for p in out.iterdir()) == ["02_softmax.ipynb", "timestamp.txt"]
    assert (out / "02_softmax.ipynb").read_text() == '{"cells": []}'


@pytest.mark.parametrize("plant", ["link", "fifo", "folder", "missing", "huge"])
def test_a_notebook_that_is_not_a_small_plain_file_is_refused(tmp_path, plant, monkeypatch):
    folder = _submission(tmp_path)
    nb = folder / "02_softmax.ipynb"
    target = tmp_path / "elsewhere.ipynb"
    target.write_text("{}")
    if plant == "link":
        os.symlink(target, nb)
    elif plant == "fifo":
        os.mkfifo(nb)
    elif plant == "folder":
        nb.mkdir()
    elif plant == "huge":
        monkeypatch.setattr(staging, "MAX_NOTEBOOK_BYTES", 10)
        nb.write_text("{" + " " * 20 + "}")
    with pytest.raises(staging.StagingError):
        staging.stage(tmp_path / "submitted", tmp_path / "staged", "ada", "02_softmax")


def test_a_linked_submission_folder_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "02_softmax.ipynb").write_text("{}")
    (tmp_path / "submitted" / "ada").mkdir(parents=True)
    os.symlink(real, tmp_path / "submitted" / "ada" / "02_softmax")
    with pytest.raises(staging.StagingError, match="folder"):
        staging.stage(tmp_path / "submitted", tmp_path / "staged", "ada", "02_softmax")


def test_restaging_replaces_the_previous_copy(tmp_path):
    folder = _submission(tmp_path)
    (folder / "02_softmax.ipynb").write_text("{}")
    staged = tmp_path / "staged"
    staging.stage(tmp_path / "submitted", staged, "ada", "02_softmax")
    (staged / "ada" / "02_softmax" / "left-over").write_text("x")
    staging.stage(tmp_path / "submitted", staged, "ada", "02_softmax")
    assert sorted(p.name for p in (staged / "ada" / "02_softmax").iterdir()) == [
        "02_softmax.ipynb"]
