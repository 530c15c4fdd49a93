"""A changed file costs its own work, whatever the number of files: the whole-file reader, in process.

Real files on disk; the work is counted (families made, status objects
renewed, rows of the families), never timed: timing is in ``bench.rrclients``.
A ``merged`` reader's families must always equal what the families of all
the data make.
"""

import json
import os
import random
import time
import types

import pytest

from exporter import wholefile
from exporter.families import gauge
from exporter.wholefile import ReadFailed, WholeFileReader

pytestmark = pytest.mark.inprocess


def parse(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except ValueError as exc:
        raise ReadFailed(str(exc)) from None


def families(data):
    """One client per file: its value, and a row per job thread (threads come and go)."""
    by_client = {d["client"]: d for _, d in sorted(data.items())}
    yield gauge("test_client_value", "value", ["client"], {c: d["value"] for c, d in by_client.items()})
    yield gauge("test_client_thread_memory_bytes", "memory", ["client", "thread"],
                {(c, str(n)): m for c, d in by_client.items() for n, m in enumerate(d["threads"])})
    hot = {c: 1 for c, d in by_client.items() if d["value"] > 90}
    if hot:
        yield gauge("test_client_hot", "a family only some data gives", ["client"], hot)


def write(folder, name, value, threads=(), client=None):
    path = os.path.join(folder, name + ".json")
    with open(path + ".tmp", "w") as handle:
        json.dump({"client": client or name, "value": value, "threads": list(threads)}, handle)
    os.replace(path + ".tmp", path)  # a new inode: seen as changed even within one mtime tick
    return path


def rows(fams):
    """Every family's name and rows, in order, as plain values."""
    return [(f.name, [(s.labels, s.value) for s in f.samples]) for f in fams]


def as_whole(reader, snapshot):
    return rows(families(snapshot.data))


@pytest.fixture
def farm(tmp_path):
    folder = str(tmp_path)
    paths = [write(folder, "c%03d" % i, i % 50, threads=[i] * (i % 3)) for i in range(200)]
    reader = WholeFileReader("test_clients", [os.path.join(folder, "*.json")], parse, families, merged=True)
    return folder, paths, reader


def test_a_changed_file_renews_only_its_own_status_and_rows(farm):
    folder, paths, reader = farm
    before = reader.sync(None)
    made = reader.families_made
    changed = write(folder, "c007", 99, threads=[1, 2, 3, 4])
    after = reader.sync([changed])

    assert reader.families_made - made == 1, "the file's new data alone: its previous rows are kept as given"
    renewed = [new for old, new in zip(before.files, after.files) if old is not new]
    assert [status.path for status in renewed] == [changed]
    assert rows(reader.families(after)) == as_whole(reader, after)
    (value,) = [f for f in reader.families(after) if f.name == "test_client_value"]
    unchanged = [f for f in reader.families(before) if f.name == "test_client_value"][0]
    assert value.rows.label_values is unchanged.rows.label_values, "same clients: their labels are shared"


def test_a_sync_that_read_nothing_hands_out_its_previous_snapshot(farm):
    _, paths, reader = farm
    snapshot = reader.sync(None)
    assert reader.sync(None) is snapshot
    assert reader.sync([paths[3]]) is snapshot


def test_a_deleted_file_takes_its_series_and_status_with_it(farm):
    folder, paths, reader = farm
    reader.sync(None)
    os.unlink(paths[5])
    snapshot = reader.sync([paths[5]])
    assert paths[5] not in {f.path for f in snapshot.files}
    exported = rows(reader.families(snapshot))
    assert exported == as_whole(reader, snapshot)
    assert not any(labels.get("client") == "c005" for _, samples in exported for labels, _ in samples)


def test_two_files_naming_one_client_fall_back_to_the_families_of_all_the_data(farm, caplog):
    folder, paths, reader = farm
    reader.sync(None)
    twin = write(folder, "zz-twin", 77, threads=[5], client="c010")
    snapshot = reader.sync([twin])
    assert snapshot.merged is None
    assert rows(reader.families(snapshot)) == as_whole(reader, snapshot)
    assert "files give the same series" in caplog.text


def test_merged_families_equal_the_families_of_all_the_data_through_any_changes(tmp_path):
    rng = random.Random(5)
    folder = str(tmp_path)
    reader = WholeFileReader("test_clients", [os.path.join(folder, "*.json")], parse, families, merged=True)
    names = ["c%02d" % i for i in range(20)]
    for step in range(300):
        name = rng.choice(names)
        path = os.path.join(folder, name + ".json")
        what = rng.random()
        if what < 0.15 and os.path.exists(path):
            os.unlink(path)
        elif what < 0.2:
            with open(path, "w") as handle:
                handle.write("{half")  # rejected: its last good rows stay
        else:
            write(folder, name, rng.randrange(100), threads=[rng.randrange(9) for _ in range(rng.randrange(4))])
        snapshot = reader.sync(None if step % 25 == 0 else [path])
        assert snapshot.merged is not None
        assert rows(reader.families(snapshot)) == as_whole(reader, snapshot), "step %d" % step


def test_a_long_first_read_hands_out_what_it_has_read_so_far(farm, monkeypatch):
    _, paths, reader = farm
    ticks = iter(range(10**6))  # a clock that moves a tenth of PROGRESS_SECONDS each time it is read
    monkeypatch.setattr(wholefile, "time", types.SimpleNamespace(
        monotonic=lambda: next(ticks) * wholefile.PROGRESS_SECONDS / 10, time=time.time))
    steps = list(reader.sync_steps(None))
    assert len(steps) > 10
    read = [len(step.files) for step in steps]
    assert read == sorted(read) and read[-1] == len(paths)
    for step in steps:
        assert rows(reader.families(step)) == as_whole(reader, step)


@pytest.mark.parametrize("bad", [{"value": None}, {"value": "7"}, {"value": 2**2000}, {"client": 5},
                                 {"client": "bad\udcff"}])
def test_a_file_whose_data_cannot_be_rendered_fails_alone_and_keeps_its_last_rows(farm, bad):
    """Checked per file read (in C for families of rows), so that the section's render never meets it."""
    folder, paths, reader = farm
    reader.sync(None)
    path = paths[4]
    document = {"client": "c004", "value": 1, "threads": [], **bad}
    with open(path, "w") as handle:
        handle.write(json.dumps(document))  # ensure_ascii: a lone surrogate is written escaped
    snapshot = reader.sync([path])
    (status,) = [f for f in snapshot.files if f.path == path]
    assert not status.up and status.parse_errors_total == 1
    assert "cannot be exported" in status.last_error
    assert rows(reader.families(snapshot)) == as_whole(reader, snapshot)
    assert all(f.up for f in snapshot.files if f.path != path)


def test_a_failure_is_counted_once_per_incident_not_per_retry(tmp_path, caplog):
    """Retries of one version failing with one error are neither counted nor logged again; a new version that
    fails, or another error, is a new incident. The error shown stays the cause."""
    path = str(tmp_path / "c1.json")
    with open(path, "w") as handle:
        handle.write("{not json")
    reader = WholeFileReader("test_clients", [str(tmp_path / "*.json")], parse, families)

    def status():
        (only,) = reader.sync([path]).files
        return only

    first = status()
    for _ in range(3):  # the ingest's retries every 2 s of a file that is down
        again = status()
    assert (again.up, again.errors_total, again.parse_errors_total) == (False, 1, 1)
    assert again.last_error == first.last_error
    assert caplog.text.count("cannot read file") == 1
    with open(path + ".tmp", "w") as handle:
        handle.write("[still not")
    os.replace(path + ".tmp", path)  # another version, another error
    changed = status()
    assert (changed.errors_total, changed.parse_errors_total) == (2, 2)
    assert changed.last_error != first.last_error and caplog.text.count("cannot read file") == 2
