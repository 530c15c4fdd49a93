"""Royal Render with many client stats files: a start serves each kind once read, a change costs that file alone.

The real daemon (and, to count the work, the real pipeline in process) over a
simulated farm whose files are changed on disk; every wait polls with a
deadline. How long things take is measured by ``bench.rrclients``, not here.
"""

import os
import time

import pytest
from conftest import value, wait_until

from exporter.config import parse
from exporter.core import Parts, build_readers
from exporter.simulation.simulator import RrFarmSimulator
from exporter.wholefile import WholeFileReader

pytestmark = pytest.mark.inprocess

CLIENTS = 60


@pytest.fixture
def farm(tmp_path):
    offset = [0.0]
    sim = RrFarmSimulator(str(tmp_path / "rr"), clients=CLIENTS, seed=8, clock=lambda: time.time() + offset[0])
    sim.offset = offset
    sim.write_all()
    return sim


def config_text(farm, timeout="5s"):
    return (farm.config_text().replace("read_timeout: 5s", "read_timeout: %s" % timeout)
            + "watch:\n  rescan_interval: 1h\n")


def client_time(samples, client):
    return value(samples, "royalrender_client_stats_timestamp_seconds", client=client)


def newer(farm, client):
    """Rewrites ``client``'s file with a latest item one item (30 s) later than any written so far."""
    farm.offset[0] += 30.0
    farm.write_client_stats(client)


def test_server_stats_are_served_while_the_client_files_are_still_being_read(farm, start_daemon, write_config):
    """A client read that hangs in the middle of the first read holds back neither the overview nor the one-file
    kinds: they are served while /-/ready still waits for the client files."""
    stuck = farm.clients[CLIENTS // 2]
    farm.inject("client_stats", "hang", stuck)
    daemon = start_daemon("--config", write_config(config_text(farm, timeout="1h")), ready=False)
    farm.wait_until_hung("client_stats", stuck)

    def overview_served():
        samples = daemon.samples()
        return (value(samples, "royalrender_jobs") is not None
                and value(samples, "royalrender_client_wol_last_success", client=farm.clients[0]) is not None)

    wait_until(overview_served, 15, "the server stats and client info, with a client read hung")
    assert daemon.get("/-/ready")[0] == 503, "the client files are not all read yet"
    assert client_time(daemon.samples(), farm.clients[-1]) is None, "the clients after the hung one are not read"


def test_a_changed_client_updates_its_series_and_a_deleted_one_drops_them(farm, start_daemon, write_config):
    daemon = start_daemon("--config", write_config(config_text(farm)))
    before = daemon.samples()
    changed, gone = farm.clients[3], farm.clients[7:10]
    was = client_time(before, changed)
    newer(farm, changed)
    wait_until(lambda: client_time(daemon.samples(), changed) > was, 10, "the changed client's newer item")
    for client in gone:
        os.unlink(farm.path("client_stats", client))
    wait_until(lambda: all(client_time(daemon.samples(), c) is None for c in gone), 10, "the deleted clients to go")

    after = daemon.samples()
    for client in gone:
        assert value(after, "royalrender_client_cpu_ratio", client=client) is None
        assert value(after, "renderfarm_exporter_source_up", kind="royalrender_client_stats",
                     path=farm.path("client_stats", client)) is None
    others = [c for c in farm.clients if c != changed and c not in gone]
    for client in others:
        path = farm.path("client_stats", client)
        for name, labels in (("royalrender_client_stats_timestamp_seconds", {"client": client}),
                             ("royalrender_client_memory_bytes", {"client": client}),
                             ("renderfarm_exporter_source_last_success_timestamp_seconds",
                              {"kind": "royalrender_client_stats", "path": path})):
            assert value(after, name, **labels) == value(before, name, **labels), (name, client)


def test_a_changed_client_file_renews_only_its_own_status_and_families(farm, tmp_path):
    """In process, with the real watcher, ingest and render threads and the real worker: the work counted."""
    parts = Parts(build_readers(parse(config_text(farm))), parse(config_text(farm)).watch)
    parts.start()
    try:
        assert parts.renderer.wait_ready(60)
        ingest = next(i for i in parts.pipeline._ingests if i.section == "royalrender")
        reader = next(r for r in ingest.readers if r.kind == "royalrender_client_stats")
        assert isinstance(reader, WholeFileReader)
        before = ingest.snapshots[reader]
        made = reader.families_made
        changed = farm.clients[5]
        path = farm.path("client_stats", changed)
        was = client_time_in(parts, changed)
        newer(farm, changed)
        wait_until(lambda: client_time_in(parts, changed) > was, 10, "the changed client rendered")

        after = ingest.snapshots[reader]
        assert reader.families_made - made == 1, "its new data alone, not every client's (nor its previous data)"
        assert [new.path for old, new in zip(before.files, after.files) if new is not old] == [path]
        assert len(after.files) == CLIENTS
    finally:
        parts.stop()


def client_time_in(parts, client):
    prefix = b'royalrender_client_stats_timestamp_seconds{client="%s"} ' % client.encode()
    body = parts.renderer.exposition_for_scrape().text
    at = body.find(prefix)
    return None if at < 0 else float(body[at + len(prefix):body.index(b"\n", at)])
