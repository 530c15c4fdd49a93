"""Fault injection on the real daemon: unmounted shares, log churn, RR files replaced, inotify exhausted.

Everything happens in temporary folders and on loopback, bounded in time.
The randomized churn keeps its own count of every line written and
compares it with the daemon's counters: nothing lost, nothing twice.
"""

import ctypes
import ctypes.util
import os
import random
import shutil
import subprocess
import sys
import time

import pytest
from conftest import REPO, parse_samples, value, wait_until

from exporter.simulation.simulator import RrFarmSimulator

pytestmark = pytest.mark.daemon

HOSTS = ("render01", "render02", "render03")


def frame(rng, host):
    return "p 948300000 tahoe.%d T anna %d %s 100 10 0 0 0 1\n" % (rng.randrange(9), rng.randrange(999), host)


def done(samples, host):
    return value(samples, "rush_frames_total", host=host, status="done") or 0


# -- an unmounted share -----------------------------------------------------------


def mount_tmpfs(folder):
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "share", str(folder)], check=True)


@pytest.mark.ecosystem
@pytest.mark.parametrize("mode", ["events", "poll"])
def test_an_unmounted_share_goes_down_and_recovers_within_two_poll_intervals(tmp_path, start_daemon, write_config,
                                                                            mode):
    folder = tmp_path / "share"
    folder.mkdir()
    mount_tmpfs(folder)
    try:
        lines = "".join(frame(random.Random(i), "render01") for i in range(3))
        (folder / "cpu.acct").write_text(lines)
        daemon = start_daemon("--config", write_config(
            "rush:\n  cpu_acct: ['%s']\nwatch:\n  mode: %s\n  poll_interval: 1s\n  rescan_interval: 1h\n"
            % (folder / "cpu.acct", mode)))
        daemon.wait_for_value("rush_frames_total", 3, host="render01", status="done")

        pattern = str(folder / "cpu.acct")
        assert value(daemon.samples(), "renderfarm_exporter_pattern_matched_files", kind="rush_cpu_acct",
                     pattern=pattern) == 1
        subprocess.run(["umount", "-l", str(folder)], check=True)  # the share is gone; an empty folder remains
        samples = daemon.wait_for_value("renderfarm_exporter_pattern_matched_files", 0, kind="rush_cpu_acct",
                                        pattern=pattern, timeout=5)
        assert done(samples, "render01") == 3, "values are kept while the share is away"
        # The file's absence is seen by the next poll, the new folder by the next supervision tick (1 s).
        wait_until(lambda: value(daemon.samples(), "renderfarm_exporter_watch_restarts_total") >= 1, 5,
                   "the new folder to be watched")

        mount_tmpfs(folder)  # back, with what the writer appended meanwhile
        (folder / "cpu.acct").write_text(lines + frame(random.Random(7), "render01"))
        returned = time.monotonic()
        daemon.wait_for_value("rush_frames_total", 4, host="render01", status="done", timeout=5)
        daemon.wait_for_value("renderfarm_exporter_pattern_matched_files", 1, kind="rush_cpu_acct",
                              pattern=pattern, timeout=5)
        assert time.monotonic() - returned <= 2 * 1.0 + 0.5, "recovered within two poll intervals"
        assert daemon.proc.poll() is None
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


# -- cpu.acct churn -------------------------------------------------------------------


class Churn:
    """A Rush daemon's writer doing everything writers and log rotation do, counting what it writes."""

    def __init__(self, folder, rng, daemon):
        self.folder = folder
        self.path = folder / "cpu.acct"
        self.rng = rng
        self.daemon = daemon
        self.written = {host: 0 for host in HOSTS}
        self.pending_half = ""
        self.rotations = 0
        self.created = time.monotonic()
        self.path.write_text("")

    def append(self, text):
        with open(self.path, "a") as handle:
            handle.write(text)

    def lines(self, count):
        text = ""
        for _ in range(count):
            host = self.rng.choice(HOSTS)
            self.written[host] += 1
            text += frame(self.rng, host)
        return text

    def op_append(self):
        self.append(self.pending_half + self.lines(self.rng.randint(1, 20)))
        self.pending_half = ""

    def op_half_line(self):
        """A writer flushing part of a line; the rest comes with the next append."""
        text = self.pending_half + self.lines(1)
        cut = self.rng.randint(1, len(text) - 2)
        self.append(text[:cut])
        self.pending_half = text[cut:]

    def op_rename_rotation(self):
        """Lines land in the old file right before it is renamed away (to a name nobody matches).

        The file has lived long enough for the daemon to open it (logs rotate daily, not within
        milliseconds of being created); what was appended just before the rename is read through
        the open handle.
        """
        time.sleep(max(0.0, self.created + 0.3 - time.monotonic()))
        self.op_append()
        self.rotations += 1
        os.rename(self.path, self.folder / ("cpu.acct.%d" % self.rotations))
        self.path.write_text("")
        self.created = time.monotonic()

    def op_copytruncate(self):
        """logrotate's copytruncate, after the daemon read the file (lines written between its copy and its
        truncation are lost by design of copytruncate, for every reader); the file regrows at once."""
        self.settle()
        self.rotations += 1
        shutil.copyfile(self.path, self.folder / ("cpu.acct.%d" % self.rotations))
        with open(self.path, "r+") as handle:
            handle.truncate(0)
        self.op_append()

    def op_delete_and_recreate(self):
        self.settle()
        os.unlink(self.path)
        self.path.write_text(self.lines(self.rng.randint(1, 5)))
        self.created = time.monotonic()

    def settle(self):
        if self.pending_half:
            self.append(self.pending_half)
            self.pending_half = ""
        self.expect(timeout=10)

    def expect(self, timeout):
        def caught_up():
            samples = self.daemon.samples()
            return all(done(samples, host) == n for host, n in self.written.items())

        try:
            wait_until(caught_up, timeout, "the daemon to count every line written")
        except AssertionError:
            samples = self.daemon.samples()
            raise AssertionError("written %s, counted %s" % (
                self.written, {h: done(samples, h) for h in HOSTS})) from None


@pytest.mark.parametrize("seed", range(4))
def test_randomized_churn_loses_nothing_and_counts_nothing_twice(tmp_path, start_daemon, write_config, seed):
    rng = random.Random(seed)
    folder = tmp_path / "logs"
    folder.mkdir()
    config = write_config("rush:\n  cpu_acct: ['%s']\nwatch:\n  rescan_interval: 1h\n" % (folder / "cpu.acct"))
    (folder / "cpu.acct").write_text("")
    daemon = start_daemon("--config", config)
    churn = Churn(folder, rng, daemon)
    operations = [churn.op_append] * 6 + [churn.op_half_line] * 2 + [churn.op_rename_rotation] * 2 + [
        churn.op_copytruncate, churn.op_delete_and_recreate]
    for _ in range(30):
        rng.choice(operations)()
        time.sleep(rng.choice((0, 0, 0.005, 0.03, 0.15)))
    churn.settle()
    samples = daemon.samples()
    assert sum(done(samples, h) for h in HOSTS) == sum(churn.written.values()) > 0
    malformed = [v for (name, _), v in samples.items() if name == "renderfarm_exporter_source_malformed_lines_total"]
    assert malformed and not any(malformed), "half lines were joined, never counted as malformed"


def test_truncation_while_the_daemon_is_stopped(tmp_path, start_daemon, write_config):
    rng = random.Random(1)
    path = tmp_path / "cpu.acct"
    path.write_text("".join(frame(rng, "render01") for _ in range(5)))
    config = write_config("rush:\n  cpu_acct: ['%s']\n" % path)
    first = start_daemon("--config", config)
    first.wait_for_value("rush_frames_total", 5, host="render01", status="done")
    first.stop()

    path.write_text("".join(frame(rng, "render01") for _ in range(2)))
    second = start_daemon("--config", config)
    samples = second.wait_for_value("rush_frames_total", 2, host="render01", status="done")
    # A new process starts its counters from the files as they are: Prometheus sees a counter reset.
    assert value(samples, "renderfarm_exporter_source_read_lines_total", kind="rush_cpu_acct", path=str(path)) == 2


# -- Royal Render -----------------------------------------------------------------------


def test_rr_file_replaced_while_a_read_hangs(tmp_path, start_daemon, write_config):
    farm = RrFarmSimulator(str(tmp_path / "rr"), clients=2, seed=3)
    farm.write_all()
    text = farm.config_text().replace("read_timeout: 5s", "read_timeout: 1s")
    config = write_config(text + "watch:\n  rescan_interval: 1h\n")
    daemon = start_daemon("--config", config)
    path = farm.path("server_stats")
    daemon.wait_for_value("renderfarm_exporter_source_up", 1, kind="royalrender_server_stats", path=path)

    farm.inject("server_stats", "hang")
    farm.wait_until_hung("server_stats")
    farm.heal("server_stats")
    farm.write_server_stats()  # a new file renamed over the one being read
    # The hung read times out (counted; the file is down until the next read, which may follow within the half
    # second a change waits to be served: the counter, not the short down, says so).
    daemon.wait_for_value("renderfarm_exporter_source_read_failures_total", 1, kind="royalrender_server_stats",
                          path=path, reason="timeout", timeout=10)
    samples = daemon.wait_for_value("renderfarm_exporter_source_up", 1, kind="royalrender_server_stats", path=path,
                                    timeout=15)
    assert "Royal Render worker failed; the next read starts a new one" in daemon.log()
    assert value(samples, "renderfarm_exporter_source_read_failures_total", kind="royalrender_server_stats",
                 path=path, reason="timeout") >= 1
    assert value(samples, "renderfarm_exporter_source_parse_errors_total", kind="royalrender_server_stats",
                 path=path) == 0, "a hung read is not the file's fault"
    fresh = parse_samples(subprocess.run([sys.executable, "-m", "exporter", "--config", config, "--once"], cwd=REPO,
                                         capture_output=True, text=True, timeout=60, check=True).stdout)
    for name in ("royalrender_jobs", "royalrender_jobs_rendering", "royalrender_server_temperature_celsius"):
        assert value(samples, name) == value(fresh, name), "%s is the replaced file's value" % name


# -- inotify exhausted ---------------------------------------------------------------------


def exhaust_inotify_instances():
    """Takes every inotify instance this user may have, as a busy desktop or IDE does."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    taken = []
    while len(taken) < 100000:
        fd = libc.inotify_init1(os.O_CLOEXEC)
        if fd < 0:
            assert ctypes.get_errno() == 24, os.strerror(ctypes.get_errno())  # EMFILE: the limit
            return taken
        taken.append(fd)
    raise AssertionError("no inotify limit reached")


def test_inotify_exhausted_falls_back_to_polling(tmp_path, start_daemon, write_config):
    path = tmp_path / "cpu.acct"
    path.write_text(frame(random.Random(1), "render01"))
    config = write_config("rush:\n  cpu_acct: ['%s']\nwatch:\n  mode: events\n  poll_interval: 500ms\n"
                          "  rescan_interval: 1h\n" % path)
    taken = exhaust_inotify_instances()
    try:
        daemon = start_daemon("--config", config)
        samples = daemon.wait_for_value("renderfarm_exporter_source_up", 1, kind="rush_cpu_acct", path=str(path))
        assert value(samples, "renderfarm_exporter_watch_info", directory=str(tmp_path), mode="poll",
                     fstype=_fstype(samples, tmp_path)) == 1
        # watchdog 7 needs the instance when the observer is made, watchdog 6 (Python 3.9) per folder:
        # the warning differs, the fallback does not.
        assert "inotify unavailable" in daemon.log()
        with open(path, "a") as handle:
            handle.write(frame(random.Random(2), "render01"))
        daemon.wait_for_value("rush_frames_total", 2, host="render01", status="done", timeout=5)
        assert daemon.proc.poll() is None
    finally:
        for fd in taken:
            os.close(fd)


def _fstype(samples, directory):
    for (name, labels), _ in samples.items():
        labels = dict(labels)
        if name == "renderfarm_exporter_watch_info" and labels.get("directory") == str(directory):
            return labels["fstype"]
    raise AssertionError("no watch info for %s" % directory)
