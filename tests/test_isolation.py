"""A hung read or a sparse hole delays only the files of its own mount, never the others: the real daemon, a
FUSE share whose reads hang, a real 32 GiB sparse file, real appends and exact totals."""

import html
import os
import subprocess
import sys
import time

import pytest
from conftest import REPO, value, wait_until
from fusefs import HangingFile

pytestmark = pytest.mark.daemon

NOW = int(time.time())
#: An append to a healthy file must be visible this soon (the target of bench/isolation.py).
FRESH_SECONDS = 1.0


def frame(host, when=NOW):
    return "p %d tahoe.7 T anna 1 %s 100 100 0 0 0 1\n" % (when, host)


def healthy_files(folder, count):
    paths = []
    for index in range(count):
        os.makedirs(folder / ("h%02d" % index))
        path = folder / ("h%02d" % index) / "cpu.acct"
        path.write_text(frame("render%02d" % index))
        paths.append(path)
    return paths


def done(samples, host):
    return value(samples, "rush_frames_total", host=host, status="done")


def append_and_time(daemon, path, host, frames_before):
    """Appends a frame to ``path``; the seconds until /metrics shows it (fails past FRESH_SECONDS)."""
    with open(path, "a") as handle:
        handle.write(frame(host))
    started = time.monotonic()
    daemon.wait_for_value("rush_frames_total", frames_before + 1, timeout=FRESH_SECONDS, host=host, status="done")
    return time.monotonic() - started


@pytest.mark.needs_root
def test_a_hung_share_delays_only_its_own_files(tmp_path, start_daemon, write_config):
    share = tmp_path / "share"
    share.mkdir()
    fs = HangingFile(str(share), "cpu.acct", (frame("hung01") * 3).encode(),
                     others={"neighbour.acct": (frame("hung02") * 2).encode()})
    fs.hang.set()  # the share's server is dead before the exporter ever reads it
    hung, neighbour = str(share / "cpu.acct"), str(share / "neighbour.acct")
    try:
        local = healthy_files(tmp_path / "local", 20)
        config = write_config("rush:\n  cpu_acct: ['%s', '%s', '%s']\nwatch:\n  mode: events\n"
                              "  rescan_interval: 1h\n  stuck_read_timeout: 1s\n"
                              % (tmp_path / "local" / "*" / "cpu.acct", hung, neighbour))
        daemon = start_daemon("--config", config)  # ready: the first full read does not wait for the share
        wait_until(lambda: fs.reads_waiting >= 1, 5, "a read to hang")
        samples = daemon.samples()
        assert [done(samples, "render%02d" % i) for i in range(20)] == [1] * 20

        seconds = [append_and_time(daemon, local[i], "render%02d" % i, 1) for i in range(0, 20, 2)]
        assert max(seconds) < FRESH_SECONDS

        for path, reason in ((hung, "a read of the file is stuck (a hung share?)"),
                             (neighbour, "waiting behind a stuck read of %s on mount %s" % (hung, share))):
            daemon.wait_for_value("renderfarm_exporter_source_up", 0, timeout=5, kind="rush_cpu_acct", path=path)
            assert html.escape(reason) in daemon.get("/")[2].decode()
        assert daemon.log().count("reading a file is stuck") == 1
        seconds = [append_and_time(daemon, local[i], "render%02d" % i, 1) for i in range(1, 20, 2)]
        assert max(seconds) < FRESH_SECONDS, "still fresh while the share hangs (retries every 2 s)"

        fs.content += frame("hung01").encode()  # written while the server was away
        fs.release()
        samples = daemon.wait_for_value("rush_frames_total", 4, timeout=5, host="hung01", status="done")
        assert done(samples, "hung02") == 2
        for path, lines in ((hung, 4), (neighbour, 2)):
            samples = daemon.wait_for_value("renderfarm_exporter_source_up", 1, timeout=5, kind="rush_cpu_acct",
                                            path=path)
            assert value(samples, "renderfarm_exporter_source_read_lines_total", kind="rush_cpu_acct",
                         path=path) == lines
        append_and_time(daemon, local[0], "render00", 2)  # a later sync counts nothing of the share twice
        samples = daemon.samples()
        assert (done(samples, "hung01"), done(samples, "hung02")) == (4, 2)
        assert sum(done(samples, "render%02d" % i) for i in range(20)) == 41
    finally:
        fs.close()


def sparse_file(path, gib, before, cut, after):
    """``before`` + ``cut`` (an incomplete line), a hole up to ``gib`` GiB, then ``after``; its size."""
    with open(path, "w") as handle:
        handle.write(before + cut)
    os.truncate(path, gib << 30)
    with open(path, "a") as handle:
        handle.write(after)
    return os.path.getsize(path)


def test_a_32_gib_sparse_file_is_read_by_its_data_and_delays_nothing(tmp_path, start_daemon, write_config):
    local = healthy_files(tmp_path / "local", 20)
    sparse = tmp_path / "local" / "sparse" / "cpu.acct"
    sparse.parent.mkdir()
    size = sparse_file(sparse, 32, frame("sparse01"), "p %d tahoe.7 T an" % NOW, frame("sparse01"))
    assert os.stat(sparse).st_blocks * 512 < 1 << 20, "a sparse file on this file system"
    config = write_config("rush:\n  cpu_acct: ['%s']\nwatch:\n  mode: events\n  rescan_interval: 1h\n"
                          % (tmp_path / "local" / "*" / "cpu.acct"))
    daemon = start_daemon("--config", config)
    per_file = dict(kind="rush_cpu_acct", path=str(sparse))
    samples = daemon.wait_for_value("rush_frames_total", 2, timeout=10, host="sparse01", status="done")
    assert value(samples, "renderfarm_exporter_source_read_lines_total", **per_file) == 3
    assert value(samples, "renderfarm_exporter_source_malformed_lines_total", **per_file) == 1
    assert value(samples, "renderfarm_exporter_source_read_bytes_total", **per_file) == size
    cpu = _cpu_seconds(daemon.proc.pid)

    # The live tail: the file grows by another hole (to 33 GiB) and a line; the healthy files stay fresh.
    with open(sparse, "r+") as handle:
        handle.truncate(33 << 30)
    with open(sparse, "a") as handle:
        handle.write(frame("sparse01"))
    seconds = [append_and_time(daemon, local[i], "render%02d" % i, 1) for i in range(0, 20, 4)]
    assert max(seconds) < FRESH_SECONDS
    samples = daemon.wait_for_value("rush_frames_total", 3, timeout=5, host="sparse01", status="done")
    assert value(samples, "renderfarm_exporter_source_read_lines_total", **per_file) == 4
    assert value(samples, "renderfarm_exporter_source_malformed_lines_total", **per_file) == 1
    assert value(samples, "renderfarm_exporter_source_read_bytes_total", **per_file) == os.path.getsize(sparse)
    assert _cpu_seconds(daemon.proc.pid) - cpu < 2.0, "a GiB of hole costs no reading (bench/isolation.py)"


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.needs_root
def test_bench_isolation_cut_every_append_fresh_beside_a_hung_file_and_a_32_gib_sparse_file():
    """A cut of ``python -m bench.isolation`` (200 files, 100 samples by hand): every append within 1 s."""
    result = subprocess.run([sys.executable, "-m", "bench.isolation", "--files", "50", "--samples", "20"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "reads hung on the share: 1" in result.stdout
    assert "appends visible within 1 s: 20 of 20 (100%)" in result.stdout
