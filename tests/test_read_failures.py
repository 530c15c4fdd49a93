"""Failed reads say what failed: a rejected file is a parse error, a crash, hang or I/O error a read failure.

In process: the real Royal Render reader and worker (the stand-in module) over simulated files, the
whole-file reader over a real file system, and the self-metrics built from their file statuses.
"""

import copy
import json
import os
import sys

import pytest

from exporter.exposition import render_section
from exporter.royalrender import daily_stats, server_stats
from exporter.royalrender.client import WorkerClient, WorkerSettings
from exporter.royalrender.reader import MemberFailures, TimeChecks, file_reader
from exporter.royalrender.timezone import Timezone
from exporter.selfmetrics import RuntimeStatus, SelfMetrics
from exporter.simulation import simformat
from exporter.simulation.simulator import RrFarmSimulator
from exporter.sources import FileStatus
from exporter.wholefile import WholeFileReader

pytestmark = pytest.mark.inprocess


@pytest.fixture
def farm(tmp_path):
    sim = RrFarmSimulator(str(tmp_path / "rr"), clients=2, seed=11)
    sim.write_all()
    return sim


@pytest.fixture
def worker(farm):
    client = WorkerClient(WorkerSettings(module="simulated", module_paths=(), root=farm.root, python=sys.executable,
                                         timezone=Timezone(), timeout=1.0, memory_limit=0))
    yield client
    client.close()


def one_file(reader, path):
    (status,) = [f for f in reader.sync([path]).files if f.path == path]
    return status


def exported(statuses):
    status = RuntimeStatus(files=tuple(statuses), watches=(), reader_failures={}, rescans=0, watch_restarts=0)
    text = render_section(SelfMetrics().families(status, {})).text.decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("renderfarm_exporter_source_")}


@pytest.mark.parametrize("fault, reason", [("crash", "crash"), ("hang", "timeout"), ("unreadable", None),
                                           ("half_written", None)])
def test_each_rr_fault_is_counted_once_under_what_failed(farm, worker, fault, reason):
    path = farm.path("server_stats")
    reader = file_reader(server_stats.KIND, [path], {}, worker, MemberFailures(), TimeChecks())
    assert one_file(reader, path).up
    farm.inject("server_stats", fault)
    status = one_file(reader, path)
    assert not status.up and status.errors_total == 1
    by_reason = status.read_failures_by_reason()
    assert set(by_reason) == {"crash", "timeout", "io", "unavailable", "outside"}, "every reason, from the start"
    assert status.parse_errors_total == (1 if reason is None else 0)
    assert by_reason == {r: int(r == reason) for r in by_reason}
    samples = exported([status])
    labels = 'kind="royalrender_server_stats",path="%s"' % path
    assert samples["renderfarm_exporter_source_parse_errors_total{%s}" % labels] == status.parse_errors_total
    if reason:
        assert samples['renderfarm_exporter_source_read_failures_total{%s,reason="%s"}' % (labels, reason)] == 1


def test_a_file_the_exporter_cannot_stat_is_an_io_failure(tmp_path):
    loop = tmp_path / "loop.json"
    os.symlink(loop, loop)  # stat fails with ELOOP: not a missing file, and not the content's fault

    def parse(path):
        raise AssertionError("a file that cannot be stat'ed is never parsed")

    reader = WholeFileReader("test_kind", [str(tmp_path / "*.json")], parse, lambda data: [])
    status = one_file(reader, str(loop))
    assert (status.up, status.parse_errors_total, status.read_failures_by_reason()) == (False, 0, {"io": 1})


def test_a_reader_that_classifies_nothing_has_its_failed_reads_counted_as_io():
    """Rush's tailer counts only I/O failures in errors_total (malformed lines are counted apart)."""
    status = FileStatus(kind="rush_cpu_acct", path="/x/cpu.acct", up=False, last_success_time=None, errors_total=3,
                        malformed_lines_total=7, bytes_read_total=0, lines_read_total=0)
    assert status.read_failures_by_reason() == {"io": 3}
    samples = exported([status])
    labels = 'kind="rush_cpu_acct",path="/x/cpu.acct"'
    assert samples["renderfarm_exporter_source_parse_errors_total{%s}" % labels] == 0
    assert samples['renderfarm_exporter_source_read_failures_total{%s,reason="io"}' % labels] == 3


def test_the_rr_reader_keeps_its_budget_from_read_to_read(farm, worker):
    """Names admitted by one read keep their series when a later read brings a more active newcomer."""
    path = farm.path("daily_stats")
    options = {"series_budget": daily_stats.SERIES_PER_NAME * 3}  # two users of their own, and __other__
    reader = file_reader(daily_stats.KIND, [path], options, worker, MemberFailures(), TimeChecks())

    def users():
        fams = {f.name: f for f in reader.families(reader.sync([path]))}
        return {s.labels["user"] for s in fams["royalrender_user_frames_left"].samples}

    first = users()
    assert len(first) == 3 and "__other__" in first
    with open(path) as handle:
        document = json.load(handle)
    entries = document["data"]["stats"]
    newcomer = copy.deepcopy(entries[0])
    newcomer["name"] = "aaron"  # alphabetically first, and as active as the most active user
    entries.append(newcomer)
    simformat.write(path, document["class"], document["data"])
    assert users() == first
