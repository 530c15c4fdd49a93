"""Attack 23: cases that HELD (pass on the current code), kept as regression tests.

Expected values derived by hand from the vendor reference and docs/royalrender.md (see
tests/test_royalrender_attack23.py for the conventions). Uses the reference fake's
data-driven extras: per-entry ``timeSlotCount()`` and failing/odd ``getJobsByType(1|2)``.
"""

import os
import subprocess
import sys

import pytest
from conftest import REPO, parse_samples, value
from test_royalrender_rr9_contract import (
    SAVED_LOCAL,
    SAVED_UNIX,
    SERVER_VALUES,
    RRFolder,
    client_item,
    dimension_names,
    implausible,
    module_info,
    slot_time,
)

pytestmark = pytest.mark.daemon

MTIME = 1795180200  # Fri 2026-11-20 14:10 CET = 13:10Z; local midnight = 1795129200


def run(config, tz="UTC"):
    env = dict(os.environ, TZ=tz)
    env.pop("RR_ROOT", None)
    result = subprocess.run([sys.executable, "-m", "exporter", "--config.file", config, "--once"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return parse_samples(result.stdout)


def entry(name, slot, **extra):
    return dict({"name": name, "slots": {str(slot): {"slotSet": 1}}}, **extra)


def test_slot_counts_differ_per_entry_and_need_not_divide_a_day(tmp_path):
    rr = RRFolder(tmp_path / "rr")
    rr.write_daily(MTIME, id_base=0, type_base=0, slots=96, users=[entry("anna", 56)],
                   projects=[entry("tahoe", 4, count=7)],
                   render_apps=[entry("arnold", 168, count=288), entry("one", 0, count=1)])
    samples = run(rr.config(tmp_path))
    assert slot_time(samples, "user", "anna") == 1795179600            # 56 x 900 s = 14:00 CET
    assert slot_time(samples, "project", "tahoe") == pytest.approx(1795129200 + 4 * 86400 / 7)  # 13:42:51.43
    assert slot_time(samples, "render_app", "arnold") == 1795179600    # 168 x 300 s = 14:00 CET
    assert slot_time(samples, "render_app", "one") == 1795129200       # one slot: local midnight


def test_types_that_are_bools_negative_huge_or_strings_go_by_their_list(tmp_path):
    rr = RRFolder(tmp_path / "rr")
    rr.write_daily(MTIME, id_base=0, type_base=0, slots=96, users=[entry("anna", 56, type=True)],
                   projects=[entry("tahoe", 56, type=-1)], render_apps=[entry("arnold", 56, type=255)])
    samples = run(rr.config(tmp_path))
    assert dimension_names(samples) == {"user": {"anna"}, "project": {"tahoe"}, "render_app": {"arnold"}}
    assert value(samples, "renderfarm_exporter_royalrender_member_failures_total", kind="royalrender_daily_stats",
                 member="_jobStatDay.type") == 1


@pytest.mark.parametrize("id_base,behaviour,timeline,expected", [
    (0, {"1": "raise"}, False, {"user": {"anna"}, "project": set(), "render_app": {"arnold"}}),
    (0, {"2": "none"}, False, {"user": {"anna"}, "project": {"tahoe"}, "render_app": set()}),
    (0, {"1": "tuple"}, False, {"user": {"anna"}, "project": {"tahoe"}, "render_app": {"arnold"}}),
    (1, {"1": "int"}, False, {"user": set(), "project": {"tahoe"}, "render_app": {"arnold"}}),
    (1, {"1": "raise"}, True, {"user": set(), "project": {"tahoe"}, "render_app": {"arnold"}}),
    (1, {"2": "raise"}, False, {"user": {"anna"}, "project": set(), "render_app": {"arnold"}}),
])
def test_ids_1_or_2_failing_drop_only_their_dimension(tmp_path, id_base, behaviour, timeline, expected):
    rr = RRFolder(tmp_path / "rr", timeline=timeline)
    rr.write_daily(MTIME, id_base=id_base, type_base=id_base, slots=96, users=[entry("anna", 56)],
                   projects=[entry("tahoe", 56)], render_apps=[entry("arnold", 56)], id_behaviour=behaviour)
    samples = run(rr.config(tmp_path))
    assert dimension_names(samples) == expected
    assert module_info(samples)["daily_stats_type_ids"] == ("0..2" if id_base == 0 else "1..3")


@pytest.mark.parametrize("tz,offset", [("/usr/share/zoneinfo/Europe/Berlin", 0), (":Europe/Berlin", 0),
                                       ("Europe/Berlin", 0), (":/usr/share/zoneinfo/Europe/Berlin", 0),
                                       ("Mars/Olympus", 3600), ("", 3600)])
def test_timezone_unset_tz_forms(tmp_path, tz, offset):
    # glibc reads a bogus TZ (and an empty one here, /etc/localtime = UTC) as UTC: RR's Berlin wall clock
    # then reads an hour ahead and is flagged; a name or file path of Berlin is converted exactly.
    rr = RRFolder(tmp_path / "rr")
    rr.write_server(SAVED_UNIX, dayMax=1440, last_save_local=SAVED_LOCAL, last_save_divisor="slot",
                    day={"870": SERVER_VALUES})
    samples = run(rr.config(tmp_path, timezone=None), tz=tz)
    assert value(samples, "royalrender_server_stats_last_save_timestamp_seconds") == SAVED_UNIX + offset
    assert implausible(samples, "server_stats") == (1 if offset else 0)


def test_pacific_apia_skipped_day(tmp_path):
    # Apia skipped Fri 2011-12-30. Day 15337 = Thu 2011-12-29; item 2879 = 23:59:30 -10 = 09:59:30Z Dec 30
    # = 1325239170; the file was written 40 s later, Sat 2011-12-31 00:00:10 +14.
    rr = RRFolder(tmp_path / "rr")
    rr.write_client("render01", 1325239210, dataMax=2880, daysMax=180,
                    days={"179": {"day": 15337, "daySet": 1, "data": {"2879": client_item(0.5)}}})
    samples = run(rr.config(tmp_path, timezone="Pacific/Apia"))
    assert value(samples, "royalrender_client_stats_timestamp_seconds", client="render01") == 1325239170
    assert implausible(samples, "client_stats") == 0


def test_backfill_day_array_with_the_90_second_reading(tmp_path):
    # lastSaveDay = local/90 with dayMax 1440: last save 14:30 CET Nov 20 = 1795181400; slot 870 = that,
    # 869 one minute before, 871 yesterday's 14:31 CET = 1795181400 + 60 - 86400.
    rr = RRFolder(tmp_path / "rr")
    rr.write_server(SAVED_UNIX + 20, dayMax=1440, last_save_local=SAVED_LOCAL, last_save_divisor=90,
                    day={str(i): dict(SERVER_VALUES, jobs_total=i) for i in (869, 870, 871)})
    out = os.path.join(str(tmp_path), "h.om")
    env = dict(os.environ, TZ="UTC")
    env.pop("RR_ROOT", None)
    result = subprocess.run([sys.executable, "-m", "exporter", "backfill", "--config.file", rr.config(tmp_path),
                             "--output", out, "--sources", "royalrender"], cwd=REPO, capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    with open(out) as handle:
        jobs = sorted(line.split()[1:] for line in handle if line.startswith("royalrender_jobs "))
    assert jobs == [["869.0", "1795181340.0"], ["870.0", "1795181400.0"], ["871.0", "1795095060.0"]]
