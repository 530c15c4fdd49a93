"""The tailer on real files: every complete line exactly once, whatever happens to the file."""

import os
import shutil

import pytest

from exporter.tailer import LineState, Tailer, read_range

pytestmark = pytest.mark.inprocess


class Collector:
    def __init__(self):
        self.lines = []

    def __call__(self, label, block, key):
        self.lines.extend(block.decode().splitlines())


def make(grace=0.0):
    sink = Collector()
    return Tailer(sink, grace_seconds=grace), sink


class Backlogs:
    """Reads the backlogs a tailer hands over, later, as the Rush reader does (``read_range``, then
    ``caught_up``)."""

    def __init__(self, sink):
        self.sink, self.waiting = sink, []

    def __call__(self, backlog, fd):
        self.waiting.append(backlog)

    def catch_up(self, tailer):
        for backlog in self.waiting:
            state = LineState(backlog.partial, backlog.skipping)
            read_range(backlog, backlog.start, backlog.end, state, self.sink, lambda *discarded: None)
            tailer.caught_up(backlog.ticket, state)
        self.waiting = []


def deferring(grace=0.0):
    """A tailer that hands every unread byte over as a backlog, and what reads them."""
    sink = Collector()
    backlogs = Backlogs(sink)
    tailer = Tailer(sink, grace_seconds=grace, backlog=backlogs)
    tailer.defer_bytes = 1
    return tailer, sink, backlogs


def append(path, text):
    with open(path, "a") as handle:
        handle.write(text)


def test_reads_only_appended_complete_lines(tmp_path):
    path = str(tmp_path / "cpu.acct")
    tailer, sink = make()
    append(path, "a\nb\npart")
    tailer.follow(path)
    assert sink.lines == ["a", "b"]
    tailer.follow(path)
    assert sink.lines == ["a", "b"]
    append(path, "ial\nc\n")
    tailer.follow(path)
    assert sink.lines == ["a", "b", "partial", "c"]


def test_crlf_and_large_files_in_chunks(tmp_path):
    path = str(tmp_path / "cpu.acct")
    lines = ["line %07d" % i for i in range(300_000)]  # ~4 MB: several read chunks
    with open(path, "w", newline="") as handle:
        handle.write("".join(line + "\r\n" for line in lines))
    tailer, sink = make()
    tailer.follow(path)
    assert [line.rstrip("\r") for line in sink.lines] == lines


def test_rename_rotation_drains_old_file_then_reads_new(tmp_path):
    path, rotated = str(tmp_path / "cpu.acct"), str(tmp_path / "Ocpu.acct")
    tailer, sink = make()
    append(path, "1\n")
    tailer.follow(path)
    append(path, "2\n")  # written right before the rename, not yet read
    os.rename(path, rotated)
    append(path, "3\n")
    tailer.follow(path)
    tailer.drain_retired()
    assert sink.lines == ["1", "2", "3"]


def test_rotated_file_still_written_during_grace_period(tmp_path):
    path, rotated = str(tmp_path / "cpu.acct"), str(tmp_path / "Ocpu.acct")
    tailer, sink = make(grace=60.0)
    append(path, "1\n")
    tailer.follow(path)
    os.rename(path, rotated)
    append(path, "new\n")
    tailer.follow(path)
    append(rotated, "late\n")  # the writer still had the old file open
    tailer.drain_retired()
    assert sorted(sink.lines) == ["1", "late", "new"]


def test_rotation_when_both_names_are_matched_counts_once(tmp_path):
    path, rotated = str(tmp_path / "cpu.acct"), str(tmp_path / "Ocpu.acct")
    tailer, sink = make()
    append(path, "1\n2\n")
    tailer.follow(path)
    os.rename(path, rotated)
    append(path, "3\n")
    for order in ([rotated, path], [path, rotated]):
        for p in order:
            tailer.follow(p)
    tailer.drain_retired()
    assert sink.lines == ["1", "2", "3"]


def test_truncation_reads_new_content_once(tmp_path):
    path = str(tmp_path / "cpu.acct")
    tailer, sink = make()
    append(path, "old 1\nold 2\n")
    tailer.follow(path)
    with open(path, "w") as handle:
        handle.write("new 1\n")
    tailer.follow(path)
    tailer.follow(path)
    assert sink.lines == ["old 1", "old 2", "new 1"]


def test_copytruncate_that_regrew_past_the_offset_is_detected(tmp_path):
    path = str(tmp_path / "cpu.acct")
    tailer, sink = make()
    append(path, "old 1\n")
    tailer.follow(path)
    with open(path, "w") as handle:  # truncated, then grew beyond the old size before the next read
        handle.write("new 1 is longer\nnew 2\n")
    tailer.follow(path)
    assert sink.lines == ["old 1", "new 1 is longer", "new 2"]


@pytest.mark.parametrize("new", ["head\nB 1\n", "head\nB 1\nB 2\n", "head\nB 1\nB 2\nB 3\n"],
                         ids=["shorter", "same size", "longer"])
def test_a_rewrite_in_place_with_the_same_first_line_is_a_new_file(tmp_path, new):
    path = str(tmp_path / "cpu.acct")
    tailer, sink = make()
    append(path, "head\nA 1\nA 2\n")
    tailer.follow(path)
    with open(path, "w") as handle:  # the same inode and first line, other lines
        handle.write(new)
    tailer.follow(path)
    append(path, "B 9\n")
    tailer.follow(path)
    assert sink.lines == ["head", "A 1", "A 2", *new.splitlines(), "B 9"]


def test_the_live_check_is_the_one_a_checkpoint_is_restored_with(tmp_path):
    """A rewrite in place between two reads and one while the exporter was stopped are found by one rule."""
    path = str(tmp_path / "cpu.acct")
    tailer, live = make()
    append(path, "head\nA 1\n")
    tailer.follow(path)
    saved = tailer.save()
    with open(path, "w") as handle:
        handle.write("head\nB 1\n")
    restored, sink = make()
    restored.load(saved)
    assert restored.mismatched() == [path]
    restored.follow(path)
    tailer.follow(path)
    assert sink.lines == ["head", "B 1"]
    assert live.lines == ["head", "A 1", "head", "B 1"]


def test_delete_and_recreate(tmp_path):
    path = str(tmp_path / "cpu.acct")
    tailer, sink = make()
    append(path, "1\n")
    tailer.follow(path)
    os.unlink(path)
    tailer.forget(path)
    append(path, "2\n")
    tailer.follow(path)
    tailer.drain_retired()
    assert sink.lines == ["1", "2"]


def test_rsync_style_replacement_continues_at_old_offset(tmp_path):
    path, temp = str(tmp_path / "cpu.acct"), str(tmp_path / ".cpu.acct.XyZ12")
    tailer, sink = make()
    append(path, "r start 1 online\n1\n")
    tailer.follow(path)
    with open(path) as old, open(temp, "w") as new:
        new.write(old.read() + "2\n3\n")
    os.replace(temp, path)
    tailer.follow(path)
    tailer.drain_retired()
    assert sink.lines == ["r start 1 online", "1", "2", "3"]


def test_replacement_with_different_content_is_read_whole(tmp_path):
    path, temp = str(tmp_path / "cpu.acct"), str(tmp_path / "tmp")
    tailer, sink = make()
    append(path, "r start 1 online\n1\n")
    tailer.follow(path)
    append(temp, "r start 2 online\nx\n")
    os.replace(temp, path)
    tailer.follow(path)
    assert sink.lines == ["r start 1 online", "1", "r start 2 online", "x"]


def test_same_file_through_symlink_and_hard_link_is_read_once(tmp_path):
    path = str(tmp_path / "cpu.acct")
    link, hard = str(tmp_path / "link.acct"), str(tmp_path / "hard.acct")
    append(path, "1\n")
    os.symlink(path, link)
    os.link(path, hard)
    tailer, sink = make()
    for p in (path, link, hard):
        tailer.follow(p)
    append(path, "2\n")
    for p in (hard, link, path):
        tailer.follow(p)
    assert sink.lines == ["1", "2"]


def test_final_line_without_newline_counts_when_file_is_gone(tmp_path):
    path = str(tmp_path / "cpu.acct")
    tailer, sink = make()
    append(path, "1\nlast")
    tailer.follow(path)
    os.unlink(path)
    tailer.forget(path)
    tailer.drain_retired()
    assert sink.lines == ["1", "last"]


def test_a_file_that_comes_back_continues_where_it_stopped(tmp_path):
    """A share unmounted and mounted again: the same file, with more lines, at the same path."""
    (tmp_path / "share").mkdir()
    path = str(tmp_path / "share" / "cpu.acct")
    tailer, sink = make()
    append(path, "first\nsecond\n")
    tailer.follow(path)
    saved = open(path).read()
    shutil.rmtree(tmp_path / "share")  # the folder goes with the file
    tailer.forget(path)
    tailer.drain_retired()  # closed: only its remembered position is left
    (tmp_path / "share").mkdir()
    append(path, saved + "third\n")
    tailer.follow(path)
    assert sink.lines == ["first", "second", "third"]


def test_a_file_whose_path_a_fifo_took_continues_when_it_is_put_back(tmp_path):
    path, aside = str(tmp_path / "cpu.acct"), str(tmp_path / ".aside")
    tailer, sink = make()
    append(path, "first\nsecond\n")
    tailer.follow(path)
    saved = open(path).read()
    os.mkfifo(aside)
    os.rename(aside, path)
    with pytest.raises(OSError, match="FIFO"):
        tailer.follow(path)
    append(aside, saved + "third\n")
    os.rename(aside, path)
    tailer.follow(path)
    assert sink.lines == ["first", "second", "third"]


@pytest.mark.parametrize("restarted", [False, True], ids=["running", "restarted"])
@pytest.mark.parametrize("away", ["folder", "fifo"])
def test_a_file_that_goes_away_mid_line_and_comes_back_completes_the_line_once(tmp_path, monkeypatch, away,
                                                                               restarted):
    """A share unmounted, or the path taken by a FIFO, while the writer is in the middle of a line: the
    incomplete line is not counted as a line when the file goes (the writer is not done with it), and the
    file that comes back continues after what was read, the line completed: every line once, no torn line.
    Also across a checkpoint taken meanwhile. And the rest of an over-long line still being skipped."""
    import exporter.tailer

    monkeypatch.setattr(exporter.tailer, "MAX_LINE_BYTES", 16)
    share = tmp_path / "share"
    share.mkdir()
    path = str(share / "cpu.acct")
    tailer, sink = make()
    discarded = []
    tailer._discarded = lambda label, nbytes, new_line: discarded.append((nbytes, new_line))
    append(path, "first\nsecond\nthi")
    tailer.follow(path)
    other = str(share / "other.acct")
    append(other, "a\n" + "x" * 20)  # over-long, still being written: skipped up to its newline
    tailer.follow(other)
    saved, saved_other = open(path).read(), open(other).read()
    if away == "folder":
        shutil.rmtree(share)  # the folder goes with the files
        tailer.forget(path)
        tailer.forget(other)
    else:
        for name in (path, other):
            os.rename(name, str(tmp_path / os.path.basename(name)))  # kept aside, out of its folder
            os.mkfifo(name)
            with pytest.raises(OSError, match="FIFO"):
                tailer.follow(name)
            os.unlink(name)
    tailer.drain_retired()
    assert sink.lines == ["first", "second", "a"] and discarded == [(20, True)]
    if restarted:
        state = tailer.save()
        assert sorted(position[4:] for position in state["gone"]) == [[0, True], [3, False]]
        tailer, sink = make()
        tailer._discarded = lambda label, nbytes, new_line: discarded.append((nbytes, new_line))
        tailer.load(state)
        sink.lines = ["first", "second", "a"]
    if away == "folder":  # mounted again
        share.mkdir()
        append(path, saved)
        append(other, saved_other)
    else:  # put back
        for name in (path, other):
            os.rename(str(tmp_path / os.path.basename(name)), name)
    append(path, "rd\nfourth\n")
    append(other, "xx\nb\n")
    tailer.follow(path)
    tailer.follow(other)
    assert sink.lines == ["first", "second", "a", "third", "fourth", "b"]
    assert discarded == [(20, True), (3, False)]  # the over-long line: its 20 bytes, then 2 and its newline


def test_a_file_deleted_from_a_folder_that_stays_is_forgotten(tmp_path):
    """Churn: nothing is kept of a deleted file; one re-created at its path is a new file, read whole."""
    path = str(tmp_path / "cpu.acct")
    tailer, sink = make()
    for _ in range(3):
        append(path, "first\nsecond\n")
        tailer.follow(path)
        os.unlink(path)
        tailer.forget(path)
        tailer.drain_retired()
        assert tailer.save() == {"cursors": [], "gone": []}
    assert sink.lines == ["first", "second"] * 3


def test_a_file_that_comes_back_with_other_content_is_read_whole(tmp_path):
    path = str(tmp_path / "cpu.acct")
    tailer, sink = make(grace=60.0)
    append(path, "first\nsecond\n")
    tailer.follow(path)
    os.unlink(path)
    tailer.forget(path)  # still in its grace period
    append(path, "first\nsecond-other\nthird\n")
    tailer.follow(path)
    tailer.drain_retired()
    assert sink.lines == ["first", "second", "first", "second-other", "third"]


@pytest.mark.parametrize("deferred", [False, True], ids=["read", "backlog"])
def test_a_copy_at_the_name_of_a_file_renamed_away_mid_line_continues_it(tmp_path, deferred):
    """rsync --backup: the file is kept under another name and a copy with more lines takes its name, while
    the file ended in an incomplete line. Every line once, the torn one whole (it was read twice, or torn)."""
    path, kept = str(tmp_path / "cpu.acct"), str(tmp_path / "cpu.acct~")
    if deferred:
        tailer, sink, backlogs = deferring(grace=60.0)
    else:
        tailer, sink = make(grace=60.0)

    def sync():
        tailer.follow(path)
        if deferred:
            backlogs.catch_up(tailer)

    append(path, "1\n")
    sync()
    append(path, "2\n3-hal")
    os.rename(path, kept)
    shutil.copyfile(kept, path)
    append(path, "f\n4\n")
    sync()  # the kept file's rest is read (or handed over); the copy continues after it
    if deferred:
        sync()  # the copy's own bytes: read once the line the kept file's backlog ended in is known
    tailer.drain_retired()
    assert sink.lines == ["1", "2", "3-half", "4"]


def test_a_rotated_file_is_not_closed_before_its_backlog_is_read(tmp_path):
    """Its last line, without a newline, is only known once the backlog is read: it counts at the close."""
    path, rotated = str(tmp_path / "cpu.acct"), str(tmp_path / "Ocpu.acct")
    tailer, sink, backlogs = deferring(grace=0.0)
    append(path, "1\n")
    tailer.follow(path)
    backlogs.catch_up(tailer)
    append(path, "2\nlast")
    os.rename(path, rotated)
    append(path, "new\n")
    tailer.follow(path)  # the rest of the rotated file and the new file are handed over
    tailer.drain_retired()  # the rotated file's grace is over, but its backlog is not read yet
    backlogs.catch_up(tailer)
    tailer.drain_retired()
    assert sink.lines == ["1", "2", "new", "last"]
