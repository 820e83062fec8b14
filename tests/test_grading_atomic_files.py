"""grader.atomic_files: a file the grader writes is read whole or not at all."""
from __future__ import annotations

import threading

import pytest

from grader.atomic_files import replace_text


def test_the_text_is_written_as_it_is_and_the_folder_made(tmp_path):
    path = tmp_path / "new" / "grades.csv"
    replace_text(path, "student,score\r\nada,3\r\n")
    assert path.read_bytes() == b"student,score\r\nada,3\r\n"
    replace_text(path, "één\n")
    assert path.read_text(encoding="utf-8") == "één\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["grades.csv"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "grades.csv"
    replace_text(path, "old\n")
    with pytest.raises(UnicodeEncodeError):
        replace_text(path, "half written \udc80")  # fails after the first bytes
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["grades.csv"]


def test_a_reader_beside_writers_sees_one_whole_text(tmp_path):
    """Two writers and a reader at once: every read is one writer's whole text."""
    path = tmp_path / "state.json"
    texts = ["a" * 50_000, "b" * 80_000]
    replace_text(path, texts[0])
    stop = threading.Event()

    def write(text):
        while not stop.is_set():
            replace_text(path, text)

    writers = [threading.Thread(target=write, args=(t,)) for t in texts]
    for w in writers:
        w.start()
    try:
        seen = {path.read_text() for _ in range(200)}
    finally:
        stop.set()
        for w in writers:
            w.join()
    assert seen <= set(texts) and seen
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
