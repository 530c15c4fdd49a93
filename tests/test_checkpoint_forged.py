"""Forged checkpoints: the checksum has no secret, so a checkpoint is validated like input.

Each test forges the state of a real checkpoint (taken by a real daemon over real files), recomputes the
header's checksum the way ``CheckpointStore.write`` does, and starts a daemon on it: the checkpoint is
discarded whole, the files are read from their start (the totals equal a ``--once`` read, exactly), the
refusal is counted and logged once, and nothing planted in it is served, opened or logged.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, parse_samples, value, wait_until

from exporter import checkpoint
from exporter.rush.config import SERIES_PER_HOST

pytestmark = pytest.mark.daemon

HOST_BUDGET = SERIES_PER_HOST * 4  # 3 hosts admitted, one name's worth kept for __other__
CAPACITY = HOST_BUDGET // SERIES_PER_HOST - 1
MAX_LABEL = 32
SECRET_HOST = "intruder"
SECRET_TEXT = "TOPSECRET-CONTENT"


def frames(host: str, count: int, start: int) -> str:
    return "".join("p\t%d\ttahoe.%d\tSHOT\tanna\t%04d\t%s\t100k\t%d\t1\t2\t0\t%d\n"
                   % (start + i, i, i, host, 10 + i, 1000 + i) for i in range(count))


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    """A farm, its config, and a checkpoint a real daemon wrote of it (then stopped cleanly)."""
    root = tmp_path_factory.mktemp("forged")
    farm = root / "farm"
    for host, count in (("render01", 5), ("render02", 3)):
        (farm / host).mkdir(parents=True)
        (farm / host / "cpu.acct").write_text(frames(host, count, 1700000000) + "u 1700000100 40\n")
    outside = root / "outside"  # a cpu.acct no pattern matches: must never be opened
    outside.mkdir()
    (outside / "cpu.acct").write_text(frames(SECRET_HOST, 2, 1700000000) + SECRET_TEXT + "\n")
    config = root / "config.yml"
    config.write_text("rush:\n  cpu_acct: ['%s/*/cpu.acct']\n  hosts: {series_budget: %d}\n"
                      "  max_label_length: %d\n  breakdowns: {users: {enabled: true}}\n"
                      "watch:\n  debounce: 50ms\n" % (farm, HOST_BUDGET, MAX_LABEL))
    once = subprocess.run([sys.executable, "-m", "exporter", "--config", str(config), "--once"],
                          capture_output=True, cwd=REPO, check=True)
    state = root / "state"
    daemon = _start(config, state, root / "genuine.log")
    try:
        wait_until(lambda: _served(daemon, "rush_frames_total", host="render01", status="done") == 5, 20,
                   "the first read")
    finally:
        daemon.stop()
    path = os.path.join(str(state), "rush.rush_cpu_acct.checkpoint")
    with open(path, "rb") as handle:
        data = handle.read()
    return {"root": root, "config": config, "outside": outside / "cpu.acct", "data": data,
            "full": rush_samples(parse_samples(once.stdout.decode()))}


class _Daemon:
    def __init__(self, config, state, log_path):
        from conftest import free_port

        self.url = "http://127.0.0.1:%d" % free_port()
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--config", str(config), "--storage.path", str(state),
             "--web.listen-address", self.url[len("http://"):], "--log.level", "debug"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=self._log)

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as response:
            return response.read().decode()

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self._log.close()


def _start(config, state, log_path) -> _Daemon:
    return _Daemon(config, state, log_path)


def _served(daemon: _Daemon, name: str, **labels):
    try:
        return value(parse_samples(daemon.metrics()), name, **labels)
    except OSError:
        return None


def rush_samples(samples) -> dict:
    keep = ("rush_", "renderfarm_exporter_source_read_", "renderfarm_exporter_source_malformed_lines",
            "renderfarm_exporter_source_up")
    return {key: sample for key, sample in samples.items() if key[0].startswith(keep)}


def forge(data: bytes, change) -> bytes:
    """``change`` applied to the checkpoint's state, with the header's checksum recomputed as the store does."""
    head, _, state = data.partition(b"\n")
    header = json.loads(head[len(checkpoint.MAGIC):])
    loaded = json.loads(state)
    change(loaded)
    state = json.dumps(loaded).encode()  # NaN stays NaN, as a forger may write it
    header.update(sha256=hashlib.sha256(state).hexdigest(), bytes=len(state))
    return checkpoint.MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + state


def _one_file(state) -> dict:
    return state["files"][sorted(state["files"])[0]]


def _frames_1e300(state):
    for totals in _one_file(state)["hosts"].values():
        totals[0] = 10 ** 300


def _frames_float_1e300(state):
    for totals in _one_file(state)["hosts"].values():
        totals[0] = 1e300


def _total_10_400(state):
    for totals in _one_file(state)["hosts"].values():
        totals[4] = 10 ** 400


def _utilization_nan(state):
    _one_file(state)["utilization"] = [1700000100, float("nan")]


def _utilization_minus_1e308(state):
    _one_file(state)["utilization"] = [1700000100, -1e308]


def _negative_lines(state):
    _one_file(state)["lines"] = -1


def _record_time_far_ahead(state):
    _one_file(state)["last_record_time"] = 4000000000  # 2096: past the clock's horizon


def _offset_past_any_file(state):
    state["tailer"]["cursors"][0]["offset"] = 1 << 60


def _twenty_thousand_hosts(state):
    hosts = ["h%05d" % i for i in range(20000)]
    state["budgets"]["host"]["admitted"] += hosts
    file = _one_file(state)
    for host in hosts:
        file["hosts"][host] = [1, 0, 0, 0, 10, 1, 2]


def _hosts_past_the_budget_not_admitted(state):
    _one_file(state)["hosts"].update({"h%05d" % i: [1, 0, 0, 0, 10, 1, 2] for i in range(20000)})


def _host_longer_than_the_label_limit(state):
    long = "x" * (MAX_LABEL + 1)
    state["budgets"]["host"]["admitted"].append(long)
    _one_file(state)["hosts"][long] = [1, 0, 0, 0, 10, 1, 2]


def _gone_share_of_a_host_not_admitted(state):
    state["gone"]["hosts"]["h99999"] = [1, 0, 0, 0, 10, 1, 2]
    state["gone"]["records"]["h99999"] = {"process": 1}


def _gone_records_of_10_400(state):
    state["gone"]["records"]["render01"] = {"process": 10 ** 400}


FORGERIES = [_frames_1e300, _frames_float_1e300, _total_10_400, _utilization_nan, _utilization_minus_1e308,
             _negative_lines, _record_time_far_ahead, _offset_past_any_file, _twenty_thousand_hosts,
             _hosts_past_the_budget_not_admitted, _host_longer_than_the_label_limit,
             _gone_share_of_a_host_not_admitted, _gone_records_of_10_400]


def _started_on(genuine, tmp_path, forged: bytes) -> _Daemon:
    state = tmp_path / "state"
    state.mkdir()
    (state / "rush.rush_cpu_acct.checkpoint").write_bytes(forged)
    daemon = _start(genuine["config"], state, tmp_path / "daemon.log")
    wait_until(lambda: _served(daemon, "renderfarm_exporter_checkpoint_discards_total", reason="invalid") == 1, 20,
               "the daemon to start and discard the checkpoint")
    return daemon


def _serving_exactly(daemon: _Daemon, full: dict) -> dict:
    """The daemon's samples once its Rush series equal ``full`` (both sections rendered), or the last ones."""
    seen = {}

    def equal():
        seen["samples"] = parse_samples(daemon.metrics())
        return rush_samples(seen["samples"]) == full

    try:
        wait_until(equal, 10, "the totals of a read from the start")
    except AssertionError:
        pass
    return seen["samples"]


def _check_discarded(daemon: _Daemon, genuine) -> dict:
    samples = _serving_exactly(daemon, genuine["full"])
    assert rush_samples(samples) == genuine["full"]
    assert value(samples, "rush_frames_total", host="render01", status="done") == 5
    assert value(samples, "rush_frames_total", host="render02", status="done") == 3
    assert value(samples, "rush_frame_wall_seconds_total", host="render01") == 10 + 11 + 12 + 13 + 14
    assert value(samples, "rush_utilization_ratio", host="render01") == 0.4
    assert value(samples, "renderfarm_exporter_checkpoint_restored_readers", source="rush") == 0
    assert value(samples, "renderfarm_exporter_checkpoint_discards_total", reason="invalid") == 1
    for reason in ("unreadable", "corrupt", "outdated"):
        assert value(samples, "renderfarm_exporter_checkpoint_discards_total", reason=reason) == 0
    hosts = {dict(labels)["host"] for name, labels in samples if name == "rush_frames_total"}
    assert hosts == {"render01", "render02"} and len(hosts) <= CAPACITY + 1
    assert sum(1 for name, labels in samples if "host" in dict(labels)) <= HOST_BUDGET
    log = daemon.log()
    assert log.count("checkpoint discarded") == 1, log
    return samples


@pytest.mark.parametrize("change", FORGERIES, ids=[f.__name__.strip("_") for f in FORGERIES])
def test_a_forged_checkpoint_is_discarded_whole_and_the_files_are_read_from_the_start(genuine, tmp_path, change):
    daemon = _started_on(genuine, tmp_path, forge(genuine["data"], change))
    try:
        _check_discarded(daemon, genuine)
        assert "h00001" not in daemon.metrics() and "x" * (MAX_LABEL + 1) not in daemon.metrics()
    finally:
        daemon.stop()


def _outside_as_a_rotated_file(outside):
    def change(state):  # a cursor without paths is drained through ``where``
        state["tailer"]["cursors"].append({"identity": [1, 2], "offset": 0, "partial": "", "skipping": False,
                                           "fingerprint": "", "tail": "", "paths": [],
                                           "label": state["tailer"]["cursors"][0]["label"], "where": outside})
        state["tailer"]["cursors"][0]["paths"] = []
    return change


def _outside_as_a_path(outside):
    def change(state):
        state["tailer"]["cursors"][0]["paths"].append(outside)
        state["present"].append(outside)
    return change


def _outside_as_a_file_label(outside):
    def change(state):
        state["files"][outside] = _one_file(state)
        state["present"].append(outside)
    return change


def _outside_by_dot_dot(outside):
    def change(state):  # in a watched folder by name, outside it in fact
        cursor = state["tailer"]["cursors"][0]
        folder = os.path.dirname(cursor["label"])
        cursor["where"] = folder + "/../../../outside/cpu.acct"
        cursor["paths"] = []
    return change


def _passwd_as_a_rotated_file(outside):
    return _outside_as_a_rotated_file("/etc/passwd")


@pytest.mark.parametrize("plant", [_outside_as_a_rotated_file, _outside_as_a_path, _outside_as_a_file_label,
                                   _outside_by_dot_dot, _passwd_as_a_rotated_file],
                         ids=["where", "path", "label", "dot-dot", "etc-passwd"])
def test_a_path_outside_the_patterns_is_never_opened_served_or_logged(genuine, tmp_path, plant):
    outside = str(genuine["outside"])
    daemon = _started_on(genuine, tmp_path, forge(genuine["data"], plant(outside)))
    try:
        samples = _check_discarded(daemon, genuine)
        text, log = daemon.metrics(), daemon.log()
        for planted in (outside, "/etc/passwd", "outside/cpu.acct", SECRET_HOST, SECRET_TEXT, "root:x:0"):
            assert planted not in text and planted not in log, planted
        assert not any(dict(labels).get("host") == SECRET_HOST for _, labels in samples)
    finally:
        daemon.stop()


def test_the_genuine_checkpoint_is_restored(genuine, tmp_path):
    """The control: the same steps with nothing forged restore the checkpoint."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "rush.rush_cpu_acct.checkpoint").write_bytes(forge(genuine["data"], lambda state: None))
    daemon = _start(genuine["config"], state, tmp_path / "daemon.log")
    try:
        wait_until(lambda: _served(daemon, "renderfarm_exporter_checkpoint_restored_readers", source="rush") == 1, 20,
                   "the checkpoint to be restored")
        samples = _serving_exactly(daemon, genuine["full"])
        assert rush_samples(samples) == genuine["full"]
        assert value(samples, "renderfarm_exporter_checkpoint_discards_total", reason="invalid") == 0
        assert "checkpoint discarded" not in daemon.log()
    finally:
        daemon.stop()


def test_a_checkpoint_with_another_checksum_is_counted_corrupt(genuine, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "rush.rush_cpu_acct.checkpoint").write_bytes(genuine["data"][:-2] + b"9}")
    daemon = _start(genuine["config"], state, tmp_path / "daemon.log")
    try:
        wait_until(lambda: _served(daemon, "renderfarm_exporter_checkpoint_discards_total", reason="corrupt") == 1,
                   20, "the corrupt checkpoint to be counted")
        assert rush_samples(_serving_exactly(daemon, genuine["full"])) == genuine["full"]
    finally:
        daemon.stop()
    shutil.rmtree(state)
