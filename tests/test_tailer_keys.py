"""The tailer's per-file key: records split across a rotation are never merged (docs/plugins.md).

A record here is a header line, continuation lines and an end line, as a plugin's appended log may have; the
assembler below keeps one record in progress per (label, key), as docs/plugins.md tells a tailing reader to.
"""

import os

import pytest

from exporter.tailer import Tailer

pytestmark = pytest.mark.inprocess


class Records:
    """Assembles ``BEGIN`` / ``+ line`` / ``END`` records per (label, key); anything else is malformed."""

    def __init__(self):
        self.open, self.done, self.malformed, self.keys = {}, [], 0, []

    def __call__(self, label, block, key):
        self.keys.append(key)
        for line in block.decode().splitlines():
            stream = (label, key)
            if line.startswith("BEGIN "):
                self.malformed += stream in self.open
                self.open[stream] = [line[6:]]
            elif line.startswith("+ ") and stream in self.open:
                self.open[stream].append(line[2:])
            elif line == "END" and stream in self.open:
                self.done.append(self.open.pop(stream))
            else:
                self.malformed += 1


def append(path, text):
    with open(path, "a") as handle:
        handle.write(text)


def test_a_record_finished_in_the_renamed_file_is_one_record(tmp_path):
    path, rotated = str(tmp_path / "farm.log"), str(tmp_path / "farm.log.1")
    records = Records()
    tailer = Tailer(records, grace_seconds=60.0)
    append(path, "BEGIN a\n+ 1\n")
    tailer.follow(path)
    os.rename(path, rotated)
    append(path, "BEGIN b\n+ 9\nEND\n")
    tailer.follow(path)  # the new file is read first; the renamed one is drained after
    append(rotated, "+ 2\nEND\n")  # the writer still had the old file open
    tailer.drain_retired()
    assert sorted(records.done) == [["a", "1", "2"], ["b", "9"]]
    assert records.malformed == 0


def test_a_record_continued_in_the_new_file_is_malformed_never_merged(tmp_path):
    path, rotated = str(tmp_path / "farm.log"), str(tmp_path / "farm.log.1")
    records = Records()
    tailer = Tailer(records, grace_seconds=0.0)
    append(path, "BEGIN a\n+ 1\n")
    tailer.follow(path)
    old_key = records.keys[-1]
    os.rename(path, rotated)
    append(path, "+ 2\nEND\nBEGIN b\nEND\n")
    tailer.follow(path)
    tailer.drain_retired()
    assert records.keys[-1] != old_key
    assert records.done == [["b"]]
    assert records.malformed == 2  # "+ 2" and "END" of the new file: no record of theirs was begun there
    assert (path, old_key) in records.open and old_key not in tailer.live_keys()  # "a" will never end


def test_a_file_keeps_its_key_while_it_grows_and_gets_a_new_one_when_rewritten(tmp_path):
    path = str(tmp_path / "farm.log")
    records = Records()
    tailer = Tailer(records)
    append(path, "BEGIN a\n")
    tailer.follow(path)
    append(path, "+ 1\nEND\n")
    tailer.follow(path)
    assert len(set(records.keys)) == 1 and records.done == [["a", "1"]]
    with open(path, "w") as handle:
        handle.write("+ 2\nEND\n")  # rewritten in place: a new file, whose lines continue no record
    tailer.follow(path)
    assert len(set(records.keys)) == 2 and records.malformed == 2


def test_a_copy_that_continues_the_file_keeps_its_key(tmp_path):
    path, copy = str(tmp_path / "farm.log"), str(tmp_path / ".farm.log.tmp")
    records = Records()
    tailer = Tailer(records)
    append(path, "BEGIN a\n+ 1\n")
    tailer.follow(path)
    with open(path) as handle:
        content = handle.read()
    append(copy, content + "+ 2\nEND\n")
    os.rename(copy, path)  # rsync: the same content plus more, under a new inode
    tailer.follow(path)
    assert len(set(records.keys)) == 1
    assert records.done == [["a", "1", "2"]] and records.malformed == 0
