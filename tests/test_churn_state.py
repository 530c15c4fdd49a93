"""Files that come and go leave nothing behind: the state of a deleted file is dropped once its totals are
merged into its host's, so memory, per-file series and the checkpoint come back to the live files' size."""

import os
import time

import pytest
from conftest import value, wait_until

pytestmark = pytest.mark.inprocess

HOSTS = ["render%02d" % i for i in range(5)]
BATCHES, PER_BATCH = 15, 200  # 3,000 short-lived files


def frame(host: str, when: int) -> str:
    return "p\t%d\ttahoe.1\tSHOT\tanna\t0001\t%s\t100k\t10\t1\t2\t0\t77\n" % (when, host)


def rss_bytes(pid: int) -> int:
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def paths_served(samples) -> set:
    return {dict(labels)["path"] for _, labels in samples if "path" in dict(labels)}


def done_by_host(samples) -> dict:
    return {host: value(samples, "rush_frames_total", host=host, status="done") for host in HOSTS}


def records(samples) -> float:
    """``p`` records of every host: by the file's host, which a new file reusing a deleted file's inode (before
    the deletion is seen) shares with that file, so only their sum is known here."""
    return sum(v for (name, labels), v in samples.items() if name == "rush_records_total"
               and dict(labels)["record"] == "process")


def test_churn_of_short_lived_files_leaves_only_the_live_files_state(tmp_path, start_daemon, write_config):
    farm, state = tmp_path / "farm", tmp_path / "state"
    farm.mkdir()
    expected = {host: 0 for host in HOSTS}
    live = []
    for name in ("live1", "live2"):
        path = farm / (name + ".acct")
        path.write_text("".join(frame(host, 1700000000) for host in HOSTS))
        live.append(str(path))
        for host in HOSTS:
            expected[host] += 1
    config = write_config("rush:\n  cpu_acct: ['%s/*.acct']\nwatch:\n  debounce: 20ms\n  rescan_interval: 1h\n"
                          % farm)
    daemon = start_daemon("--config", config, "--storage.path", str(state))
    checkpoint = state / "rush.rush_cpu_acct.checkpoint"

    def written_after(writes: float) -> bool:
        return (value(daemon.samples(), "renderfarm_exporter_checkpoint_writes_total") or 0) > writes

    wait_until(lambda: written_after(0), 20, "a checkpoint of the live files")
    live_size = os.path.getsize(checkpoint)
    rss_before = rss_bytes(daemon.proc.pid)

    when = 1700000100
    for batch in range(BATCHES):
        created = []
        for index in range(PER_BATCH):
            host = HOSTS[(batch * PER_BATCH + index) % len(HOSTS)]
            path = farm / ("churn-%02d-%03d.acct" % (batch, index))
            path.write_text(frame(host, when))
            when += 1
            expected[host] += 1
            created.append(path)
        wait_until(lambda: done_by_host(daemon.samples()) == expected, 20, "batch %d to be counted" % batch)
        for path in created:
            path.unlink()

    def settled() -> bool:
        samples = daemon.samples()
        return paths_served(samples) == set(live) and done_by_host(samples) == expected

    wait_until(settled, 20, "the deleted files' series to go")
    samples = daemon.samples()
    assert done_by_host(samples) == expected, "every frame counted once"
    assert sum(expected.values()) == 2 * len(HOSTS) + BATCHES * PER_BATCH
    assert len([key for key in samples if key[0] == "renderfarm_exporter_source_up"]) == 2
    assert records(samples) == sum(expected.values())

    writes = value(samples, "renderfarm_exporter_checkpoint_writes_total")
    # Checkpoints take at most 0.2% of a core: a write of the churn's many files may put the next one 20-30 s away.
    wait_until(lambda: written_after(writes), 60, "a checkpoint after the churn")
    time.sleep(0.5)
    churned_size = os.path.getsize(checkpoint)
    rss_after = rss_bytes(daemon.proc.pid)
    print("checkpoint %d -> %d bytes, RSS %.1f -> %.1f MB" % (live_size, churned_size, rss_before / 2**20,
                                                                rss_after / 2**20))
    # The hosts' share of the gone files (totals and records of 5 hosts) is all the churn may add.
    assert churned_size <= live_size * 1.5 + 1024, (live_size, churned_size)
    assert rss_after - rss_before < 20 * 2**20, (rss_before, rss_after)

    daemon.stop()  # a clean stop writes the last checkpoint; a restart from it keeps the gone files' share
    again = start_daemon("--config", config, "--storage.path", str(state))
    restarted = again.samples()
    assert value(restarted, "renderfarm_exporter_checkpoint_restored_readers", source="rush") == 1
    assert done_by_host(restarted) == expected
    assert records(restarted) == sum(expected.values())
    assert paths_served(restarted) == set(live)


def test_a_path_refused_as_outside_the_folders_leaves_nothing_once_it_is_gone(tmp_path):
    from exporter.rush.config import CpuAcctEntry, RushConfig
    from exporter.rush.cpu_acct import CpuAcctReader

    (tmp_path / "farm").mkdir()
    (tmp_path / "elsewhere.acct").write_text(frame("render01", 1700000000))
    link = tmp_path / "farm" / "link.acct"
    reader = CpuAcctReader(RushConfig(cpu_acct=(CpuAcctEntry(path=str(tmp_path / "farm" / "*.acct")),),
                                      read_processes=1))
    for _ in range(3):  # the same path refused, gone, back: refused (and logged) again each time
        link.symlink_to(tmp_path / "elsewhere.acct")
        refused = reader.sync(None)
        assert [(f.path, f.up, dict(f.read_failures)) for f in refused.files] == [(str(link), False, {"outside": 1})]
        link.unlink()
        assert reader.sync(None).files == ()
        assert not reader._outside and not reader._containment._refused and not reader._files
    assert reader.sync(None).frames == {}
