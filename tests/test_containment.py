"""Symlinks that lead outside the configured folders: refused, counted, shown, logged once; nothing of the file
published or logged. Against the real daemon over real files and symlinks, and the rule's parts in-process."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, value, wait_until

from exporter import containment
from exporter.containment import OUTSIDE_REASON, Containment, OutsideRoots
from exporter.paths import PathPattern
from exporter.tailer import NotRegularFile, Tailer
from exporter.wholefile import WholeFileReader

pytestmark = pytest.mark.inprocess

NOW = int(time.time())
SECRET = "hunter2"


def frame(host, owner="anna", when=NOW):
    return "p %d tahoe.7 T %s 1 %s 100 100 0 0 0 1\n" % (when, owner, host)


def config(write_config, pattern, extra=""):
    return write_config("rush:\n  cpu_acct: ['%s']\n  breakdowns:\n    users:\n      enabled: true\n"
                        "watch:\n  rescan_interval: 1h\n%s" % (pattern, extra))


def farm(tmp_path):
    """A configured folder with one real log, and a symlink in it to a file outside holding a record and a secret."""
    logs, outside = tmp_path / "logs", tmp_path / "outside"
    logs.mkdir()
    outside.mkdir()
    (logs / "render01.acct").write_text(frame("render01"))
    secret = outside / "app.conf"
    secret.write_text(frame("leakhost", owner="leakuser") + "db_password=%s\n" % SECRET)
    os.symlink(secret, logs / "evil.acct")
    return logs


def published(daemon):
    return daemon.log() + daemon.get("/metrics")[2].decode() + daemon.get("/")[2].decode()


def test_a_symlink_out_of_the_folder_is_refused_counted_and_shown_and_nothing_of_it_published(
        tmp_path, start_daemon, write_config):
    logs = farm(tmp_path)
    daemon = start_daemon("--config", config(write_config, logs / "*.acct"))
    evil = {"kind": "rush_cpu_acct", "path": str(logs / "evil.acct")}
    daemon.wait_for_value("rush_frames_total", 1, host="render01", status="done")
    samples = daemon.wait_for_value("renderfarm_exporter_source_up", 0, **evil)
    # retried every 2 s while down, each retry refused and counted; logged once
    wait_until(lambda: value(daemon.samples(), "renderfarm_exporter_source_read_failures_total", reason="outside",
                             **evil) >= 3, 15, "three refusals")
    samples = daemon.samples()
    assert value(samples, "renderfarm_exporter_source_read_failures_total", reason="io", **evil) == 0
    assert value(samples, "renderfarm_exporter_source_read_lines_total", **evil) == 0
    assert value(samples, "renderfarm_exporter_source_up", kind="rush_cpu_acct", path=str(logs / "render01.acct")) == 1
    assert {dict(labels)["host"] for name, labels in samples if name == "rush_frames_total"} == {"render01"}
    assert {dict(labels)["user"] for name, labels in samples if name == "rush_user_frames_total"} == {"anna"}
    page = daemon.get("/")[2].decode()
    assert OUTSIDE_REASON in page and str(logs / "evil.acct") in page
    log = daemon.log()
    assert log.count("file refused: it leads outside the configured folders") == 1
    assert "resolved=%s" % (tmp_path / "outside" / "app.conf") in log
    everything = published(daemon)
    for leaked in (SECRET, "db_password", "leakhost", "leakuser"):
        assert leaked not in everything


def test_with_the_opt_in_a_symlink_out_of_the_folder_is_read(tmp_path, start_daemon, write_config):
    logs = farm(tmp_path)
    daemon = start_daemon("--config", config(write_config, logs / "*.acct", "  follow_symlinks_outside: true\n"))
    evil = {"kind": "rush_cpu_acct", "path": str(logs / "evil.acct")}
    samples = daemon.wait_for_value("rush_frames_total", 1, host="leakhost", status="done")
    assert value(samples, "rush_user_frames_total", user="leakuser", status="done") == 1
    assert value(samples, "renderfarm_exporter_source_up", **evil) == 1
    assert value(samples, "renderfarm_exporter_source_read_lines_total", **evil) == 2
    assert value(samples, "renderfarm_exporter_source_malformed_lines_total", **evil) == 1
    assert value(samples, "renderfarm_exporter_source_read_failures_total", reason="outside", **evil) is None
    log = daemon.log()
    assert "file refused" not in log
    # the password line is malformed, and not shaped like a record: only its number and length are logged
    assert 'reason="unknown record type" line_number=2 line_bytes=19 malformed=1' in log
    assert SECRET not in published(daemon) and "db_password" not in log


def test_symlinks_inside_the_folder_and_a_symlinked_folder_are_read(tmp_path, start_daemon, write_config):
    real = tmp_path / "mnt" / "rush"
    (real / "archive").mkdir(parents=True)
    (real / "archive" / "render02.log").write_text(frame("render02") * 2)
    os.symlink(real / "archive" / "render02.log", real / "render02.acct")  # inside the root, to an unmatched name
    os.symlink("archive/render02.log", real / "relative.acct")  # the same file again: read once
    (real / "render03.acct").write_text(frame("render03"))
    farm_link = tmp_path / "farm"
    os.symlink(real, farm_link)  # the configured folder is itself a symlink (a share mounted elsewhere)
    daemon = start_daemon("--config", config(write_config, farm_link / "*.acct"))
    samples = daemon.wait_for_value("rush_frames_total", 2, host="render02", status="done")
    assert value(samples, "rush_frames_total", host="render03", status="done") == 1
    for name in ("render02.acct", "relative.acct", "render03.acct"):
        assert value(samples, "renderfarm_exporter_source_up", kind="rush_cpu_acct", path=str(farm_link / name)) == 1
    with open(real / "archive" / "render02.log", "a") as handle:
        handle.write(frame("render02"))
    daemon.proc.send_signal(signal.SIGHUP)  # a rescan: no event names the link when its target changes
    daemon.wait_for_value("rush_frames_total", 3, host="render02", status="done")
    assert "file refused" not in daemon.log()


def test_a_malformed_line_with_a_secret_is_logged_by_position_length_and_a_short_escaped_excerpt(
        tmp_path, start_daemon, write_config):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.acct").write_text(frame("render01") * 3 + "u %d db_password=%s\x1b\n" % (NOW, SECRET))
    (logs / "b.acct").write_text(frame("render02") + "\n" + "password: %s\n" % SECRET)
    daemon = start_daemon("--config", config(write_config, logs / "*.acct"))
    daemon.wait_for_value("renderfarm_exporter_source_malformed_lines_total", 1, kind="rush_cpu_acct",
                          path=str(logs / "b.acct"))
    daemon.wait_for_value("renderfarm_exporter_source_malformed_lines_total", 1, kind="rush_cpu_acct",
                          path=str(logs / "a.acct"))
    log = daemon.log()
    assert ('path=%s reason="percent busy is not a plain ASCII number" line_number=4 line_bytes=%d '
            'excerpt="u %d db_" malformed=1' % (logs / "a.acct", 26 + len(SECRET), NOW)) in log
    assert ('path=%s reason="unknown record type" line_number=3 line_bytes=17 malformed=1'
            % (logs / "b.acct")) in log
    assert SECRET not in published(daemon) and "db_password" not in log


# -- the rule's parts, in-process --------------------------------------------------------------------------------


def test_a_symlink_swapped_in_between_the_check_and_the_open_is_refused_on_the_descriptor(tmp_path):
    (tmp_path / "logs").mkdir()
    inside, outside = tmp_path / "logs" / "cpu.acct", tmp_path / "shadow"
    inside.write_text(frame("render01"))
    outside.write_text("root:x:0:0\n")
    rule = Containment([PathPattern(str(tmp_path / "logs" / "*.acct"))])
    rule.check(str(inside))  # passes: the path is a plain file inside
    fd = os.open(outside, os.O_RDONLY)  # what the open would get had the path been swapped for a symlink
    try:
        with pytest.raises(OutsideRoots):
            rule.check_descriptor(fd, str(inside))
    finally:
        os.close(fd)
    fd = os.open(inside, os.O_RDONLY)
    try:
        rule.check_descriptor(fd, str(inside))
    finally:
        os.close(fd)


def test_the_tailer_refuses_and_forgets_a_path_that_leads_out(tmp_path):
    (tmp_path / "logs").mkdir()
    path, outside = tmp_path / "logs" / "cpu.acct", tmp_path / "elsewhere"
    path.write_text("one\n")
    outside.write_text("secret\n")
    blocks = []
    tailer = Tailer(lambda label, block, key: blocks.append(block),
                    containment=Containment([PathPattern(str(tmp_path / "logs" / "cpu.acct"))]))
    tailer.follow(str(path))
    os.unlink(path)
    os.symlink(outside, path)
    with pytest.raises(OutsideRoots):
        tailer.follow(str(path))
    assert blocks == [b"one\n"] and tailer.paths == set()


def test_a_whole_file_never_goes_to_its_parser_when_it_leads_out(tmp_path):
    """Royal Render's files are read by the worker, by path: the daemon checks the path before asking it."""
    (tmp_path / "rr").mkdir()
    (tmp_path / "secret.db").write_text("secret")
    (tmp_path / "rr" / "good.db").write_text("good")
    os.symlink(tmp_path / "secret.db", tmp_path / "rr" / "evil.db")
    parsed = []
    reader = WholeFileReader("rr_kind", [str(tmp_path / "rr" / "*.db")], lambda path: parsed.append(path) or 1,
                             lambda data: [])
    files = {f.path: f for f in reader.sync(None).files}
    assert parsed == [str(tmp_path / "rr" / "good.db")]
    evil = files[str(tmp_path / "rr" / "evil.db")]
    assert (evil.up, evil.last_error, evil.read_failures_by_reason()) == (
        False, OUTSIDE_REASON, {"outside": 1, "io": 0})
    containment.follow_outside(True)
    try:
        files = {f.path: f for f in reader.sync(None).files}
    finally:
        containment.follow_outside(False)
    assert parsed == [str(tmp_path / "rr" / name) for name in ("good.db", "evil.db")]
    assert files[str(tmp_path / "rr" / "evil.db")].up


def test_without_a_root_a_device_is_still_refused_on_its_descriptor(tmp_path):
    os.symlink("/dev/zero", tmp_path / "cpu.acct")
    tailer = Tailer(lambda label, block, key: None)
    with pytest.raises(NotRegularFile, match="a character device"):
        tailer.follow(str(tmp_path / "cpu.acct"))


# -- polled folders ----------------------------------------------------------------------------------------------


def rss_bytes(daemon):
    with open("/proc/%d/status" % daemon.proc.pid) as status:
        return int(next(line for line in status if line.startswith("VmRSS:")).split()[1]) * 1024


def test_a_symlink_to_a_big_folder_and_symlink_loops_in_a_polled_folder_are_not_walked(
        tmp_path, start_daemon, write_config):
    """watchdog's polling snapshot followed them: /usr (140,000 entries here) held in memory at every poll, and
    two links to their own folder (2**40 paths) until MemoryError killed the daemon."""
    root = tmp_path / "share"
    (root / "render01").mkdir(parents=True)
    (root / "render01" / "cpu.acct").write_text(frame("render01"))
    os.symlink("/usr", root / "usr")
    os.symlink(".", root / "loop1")
    os.symlink(".", root / "loop2")
    os.symlink("..", root / "render01" / "up")
    daemon = start_daemon("--config", config(write_config, root / "**" / "cpu.acct",
                                             "  mode: poll\n  poll_interval: 200ms\n"))
    daemon.wait_for_value("rush_frames_total", 1, host="render01", status="done")
    assert "mode=poll" in daemon.log()
    for appended in (2, 3):  # noticed by polls (the rescan is an hour away)
        with open(root / "render01" / "cpu.acct", "a") as handle:
            handle.write(frame("render01"))
        daemon.wait_for_value("rush_frames_total", appended, host="render01", status="done", timeout=5)
    assert daemon.proc.poll() is None and daemon.get("/-/healthy")[0] == 200
    assert rss_bytes(daemon) < 120 * 2**20
    log = daemon.log()
    assert log.count("symlinks in a polled folder lead outside it and are not followed") == 1
    assert "symlink=%s" % (root / "usr") in log
    assert "MemoryError" not in log and "Traceback" not in log


@pytest.mark.daemon
def test_backfill_skips_a_symlink_out_of_the_folders_unless_opted_in(tmp_path, write_config):
    logs, outside = tmp_path / "logs", tmp_path / "outside"
    (logs / "render01").mkdir(parents=True)
    (logs / "evil").mkdir()
    outside.mkdir()
    (logs / "render01" / "cpu.acct").write_text(frame("render01", when=NOW - 3600))
    (outside / "app.conf").write_text(frame("leakhost", when=NOW - 3600) + "db_password=%s\n" % SECRET)
    os.symlink(outside / "app.conf", logs / "evil" / "cpu.acct")
    output = tmp_path / "out.om"
    for extra, code in (("", 1), ("  follow_symlinks_outside: true\n", 0)):
        result = subprocess.run([sys.executable, "-m", "exporter", "backfill", "--config",
                                 config(write_config, logs / "**" / "cpu.acct", extra), "--output", str(output),
                                 "--since", "2h", "--sources", "rush"], cwd=REPO, capture_output=True, text=True,
                                timeout=120)
        written = output.read_text()
        assert result.returncode == code, result.stderr
        assert 'host="render01"' in written and SECRET not in written + result.stderr
        if code:
            assert "skipped: %s: [Errno 13] %s" % (logs / "evil" / "cpu.acct", OUTSIDE_REASON) in result.stderr
            assert "leakhost" not in written + result.stderr
        else:
            assert 'host="leakhost"' in written


def test_a_refusal_is_logged_once_until_the_path_leads_inside_again(tmp_path, caplog):
    (tmp_path / "logs").mkdir()
    path, outside = tmp_path / "logs" / "cpu.acct", tmp_path / "elsewhere"
    outside.write_text("")
    (tmp_path / "logs" / "real").write_text("")
    rule = Containment([PathPattern(str(path))])
    refusals = []
    for target in (outside, outside, tmp_path / "logs" / "real", outside):
        if path.is_symlink():
            os.unlink(path)
        os.symlink(target, path)
        try:
            rule.check(str(path))
        except OutsideRoots as exc:
            refusals.append(exc.resolved)
    assert refusals == [str(outside)] * 3
    logged = [r.fields for r in caplog.records if r.getMessage().startswith("file refused")]
    assert logged == [{"path": str(path), "resolved": str(outside)}]  # the third: within the minute, counted


@pytest.mark.parametrize("restarted", [False, True], ids=["running", "restarted"])
def test_a_file_whose_link_leads_out_mid_line_and_back_is_counted_once_and_its_line_completed(tmp_path,
                                                                                                restarted):
    """The link to a file points outside the folders for a while (ln -sfn elsewhere, and back), while the
    writer is in the middle of a line: the incomplete line is no malformed line, and the file that comes back
    is not read again from its start: 11 records, each once. Also across a checkpoint taken meanwhile."""
    from exporter.rush.config import CpuAcctEntry, RushConfig
    from exporter.rush.cpu_acct import CpuAcctReader

    farm, elsewhere = tmp_path / "farm", tmp_path / "elsewhere"
    (farm / "store").mkdir(parents=True)
    elsewhere.mkdir()
    line = b"p 1700000000 tahoe.1 T anna 1 render01 100 10 0 0 0 1\n"
    real, link = farm / "store" / "render01.acct", farm / "cpu.acct"
    real.write_bytes(line * 10 + line[:20])  # the writer is mid-line
    (elsewhere / "x").write_bytes(b"")
    os.symlink(real, link)

    def point(target):
        os.symlink(target, str(link) + ".new")
        os.replace(str(link) + ".new", link)

    config = RushConfig(cpu_acct=(CpuAcctEntry(path=str(link)),), read_processes=1)
    reader = CpuAcctReader(config)
    assert reader.sync(None).frames[("render01", "done")] == 10
    point(elsewhere / "x")
    out = reader.sync(None)
    assert out.files[0].last_error == OUTSIDE_REASON
    assert (out.frames[("render01", "done")], out.files[0].malformed_lines_total) == (10, 0)
    if restarted:
        state = reader.checkpoint()
        offset = 10 * len(line) + 20  # remembered with its incomplete line: 20 bytes
        assert [position[2:] for position in json.loads(state)["tailer"]["gone"]] == [
            [offset, (line * 11)[offset - 64:offset].decode(), 20, False]]
        reader.close()
        reader = CpuAcctReader(config)
        assert reader.restore(state)
    point(real)
    with open(real, "ab") as writer:
        writer.write(line[20:])  # the writer finishes its line
    back = reader.sync(None)
    assert (back.frames[("render01", "done")], back.files[0].malformed_lines_total) == (11, 0)
    assert (back.files[0].lines_read_total, back.files[0].bytes_read_total) == (11, 11 * len(line))
