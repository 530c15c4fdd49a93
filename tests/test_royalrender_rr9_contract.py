"""RR 8 / RR 9 shapes, slot times across DST, stale slots and time plausibility, against an independent fake.

The fake (tests/reference_rr_module.py) was written from the vendor's
reference and royalrender-facts.md only. It is installed as the vendor
would ship it -- ``[RR]/bin/lx64/lib/libpyRR<maj><min>_datafiles.py`` --
so ``module: auto`` finds it, and every file's content is chosen per test
in the fake's own JSON format.

Every expected value is computed by hand in the comments, from the
reference and the contract (never by calling exporter code); the Unix
times were computed with ``date -u -d '<time> UTC' +%s`` and cross-checked
with ``TZ=Europe/Berlin date -d`` and ``zdump -v -c 2026,2027 Europe/Berlin``:

    Europe/Berlin 2026: CET (UTC+1) until Sun Mar 29 01:00Z, when 02:00 CET jumps to 03:00 CEST
    (UTC+2); CEST until Sun Oct 25 01:00Z, when 03:00 CEST falls back to 02:00 CET.
    Contract: a wall-clock time in the gap (Mar 29 02:00-03:00) is read with the offset in
    force before the switch (UTC+1); one in the repeated hour (Oct 25 02:00-03:00) at its
    first occurrence (UTC+2).

Reference time of every file is its modification time, set with os.utime.
The exporter runs with TZ=UTC (the machine here runs UTC too), so only
``royalrender.timezone`` says where RR's wall clock is.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, parse_samples, value, wait_until

pytestmark = pytest.mark.daemon

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE_NAME = "libpyRR%d%d_datafiles" % sys.version_info[:2]
MAGIC = "RR-REFERENCE-FAKE"
MIB = 1048576
BERLIN = "Europe/Berlin"
DIMENSIONS = ("user", "project", "render_app")
AVOIDED_ID0 = "_dailyStats_data.getJobsByType(0)"


# -- the fake RR installation ------------------------------------------------------

class RRFolder:
    """An RR folder: the reference fake in bin/lx64/lib, files written in its format."""

    def __init__(self, root, timeline=False):
        self.root = str(root)
        self.lib = os.path.join(self.root, "bin", "lx64", "lib")
        os.makedirs(self.lib)
        shutil.copy(os.path.join(HERE, "reference_rr_module.py"), os.path.join(self.lib, MODULE_NAME + ".py"))
        if timeline:  # RR 9's _dailyStats_timeline class exists in the module
            with open(os.path.join(self.lib, MODULE_NAME + ".features.json"), "w") as handle:
                json.dump({"timeline": True}, handle)
        self.server = os.path.join(self.root, "sub", "stats", "server_stats.db")
        self.daily_dir = os.path.join(self.root, "sub", "stats", "server")
        self.clients_dir = os.path.join(self.root, "sub", "stats", "clients")
        for folder in (self.daily_dir, self.clients_dir):
            os.makedirs(folder)

    @staticmethod
    def _write(path, class_name, mtime, **data):
        with open(path, "w") as handle:
            json.dump(dict(data, magic=MAGIC, **{"class": class_name}), handle)
        os.utime(path, (mtime, mtime))
        return path

    def write_daily(self, mtime, name="2026-day.stats", **data):
        return self._write(os.path.join(self.daily_dir, name), "_dailyStats_data", mtime, **data)

    def write_server(self, mtime, **data):
        return self._write(self.server, "_rrGlobalStatsLS", mtime, **data)

    def write_client(self, client, mtime, **data):
        return self._write(os.path.join(self.clients_dir, client + ".stats"), "_rrClientStats_data", mtime, **data)

    def config(self, tmp_path, timezone=BERLIN):
        lines = ["royalrender:", "  root: '%s'" % self.root, "  module: auto", "  read_timeout: 10s",
                 "  client_info:", "    enabled: false", "  client_groups:", "    enabled: false",
                 "  client_stats:", "    path: 'sub/stats/clients/*.stats'",
                 "watch:", "  rescan_interval: 1h"]
        if timezone is not None:
            lines.insert(3, "  timezone: %s" % timezone)
        path = os.path.join(str(tmp_path), "config.yml")
        with open(path, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        return path


def exporter_env():
    # the exporter's own zone is UTC: RR's wall clock is only known through royalrender.timezone
    env = dict(os.environ, TZ="UTC")
    env.pop("RR_ROOT", None)
    return env


def run_once(config_path):
    result = subprocess.run([sys.executable, "-m", "exporter", "--config.file", config_path, "--once"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, env=exporter_env())
    assert result.returncode == 0, result.stderr
    return parse_samples(result.stdout)


@pytest.fixture
def rr(tmp_path):
    return RRFolder(tmp_path / "rr")


@pytest.fixture
def rr9_timeline(tmp_path):
    return RRFolder(tmp_path / "rr", timeline=True)


# -- reading the exposition ---------------------------------------------------------

def dimension_names(samples):
    """{dimension: set of label values} over every royalrender_<dimension>_* series."""
    found = {dimension: set() for dimension in DIMENSIONS}
    for (name, labels) in samples:
        for dimension in DIMENSIONS:
            if name.startswith("royalrender_%s_" % dimension):
                labels = dict(labels)
                assert set(labels) - {dimension, "state"} == set(), (name, labels)
                found[dimension].add(labels[dimension])
    return found


def up(samples, kind, path):
    return value(samples, "renderfarm_exporter_source_up", kind="royalrender_" + kind, path=path)


def module_info(samples):
    info = [dict(labels) for (name, labels) in samples if name == "renderfarm_exporter_royalrender_module_info"]
    assert len(info) == 1, info
    return info[0]


def slot_time(samples, dimension, name):
    return value(samples, "royalrender_%s_slot_timestamp_seconds" % dimension, **{dimension: name})


def series_of(samples, prefix, **labels):
    """Every series whose name starts with ``prefix`` and that carries ``labels``."""
    wanted = set(labels.items())
    return sorted(name for (name, found) in samples if name.startswith(prefix) and wanted <= set(found))


def offset(samples, kind):
    return value(samples, "renderfarm_exporter_royalrender_time_offset_seconds", kind="royalrender_" + kind)


def implausible(samples, kind):
    return value(samples, "renderfarm_exporter_royalrender_implausible_times_total", kind="royalrender_" + kind)


def stale(samples, kind):
    return value(samples, "renderfarm_exporter_royalrender_stale_slots_total", kind="royalrender_" + kind)


# -- a plain day: Fri 2026-11-20, CET (UTC+1) ---------------------------------------------
#
# 96 slots of 900 s. Local midnight Nov 20 00:00 CET = 2026-11-19T23:00Z.
#   slot 54 = 13:30 CET = 12:30Z = 1795177800
#   slot 55 = 13:45 CET = 12:45Z = 1795178700
#   slot 56 = 14:00 CET = 13:00Z = 1795179600
# File mtime 14:10 CET = 13:10Z = 1795180200: slot 56 (the file's newest set slot) starts
# before it, so D = Nov 20; 4 slots = 3600 s, so every slot from 12:10Z on is fresh.
PLAIN_MTIME = 1795180200
PLAIN_SLOT = {54: 1795177800, 55: 1795178700, 56: 1795179600}


def plain_day_entries():
    anna = {"name": "anna", "slots": {
        # slot 55: older values, must not be exported
        "55": {"slotSet": 1, "jobsRendering": 9, "framesRendered": 999, "avPSUsage": 9.0},
        "56": {"slotSet": 1, "jobsWaiting": 1, "jobsDisabled": 2, "jobsIdle": 3, "jobsRendering": 4,
               "jobsDone": 5, "avPSUsage": 1.5, "maxPSUsage": 2.5, "PSneeded": 6.5, "renderLicNeeded": 3.0,
               "timesSended": 11, "timesFinished": 12, "avMemUsageMB": 512, "maxMemUsageMB": 2048,
               "avFrameTime": 95, "maxFrameTime": 300, "framesRendered": 30, "framesLeft": 70},
        # slot 57 is not set (slotSet false): junk that must never be read as the latest
        "57": {"slotSet": 0, "jobsRendering": 50, "framesRendered": 5000}}}
    tahoe = {"name": "tahoe", "slots": {"55": {"slotSet": 1, "jobsWaiting": 4, "framesLeft": 400}}}
    arnold = {"name": "arnold", "slots": {"54": {"slotSet": 1, "framesRendered": 77}}}
    return [anna], [tahoe], [arnold]


def write_plain_day(rr, id_base, type_base, **extra):
    users, projects, render_apps = plain_day_entries()
    return rr.write_daily(PLAIN_MTIME, id_base=id_base, type_base=type_base, slots=96, users=users,
                          projects=projects, render_apps=render_apps, **extra)


def assert_plain_day_values(samples, path):
    assert up(samples, "daily_stats", path) == 1
    assert dimension_names(samples) == {"user": {"anna"}, "project": {"tahoe"}, "render_app": {"arnold"}}
    # anna: slot 56, units as documented: MB -> bytes (x 1048576), the rest as they are
    for state, expected in (("waiting", 1), ("disabled", 2), ("idle", 3), ("rendering", 4), ("done", 5)):
        assert value(samples, "royalrender_user_jobs", user="anna", state=state) == expected, state
    assert value(samples, "royalrender_user_ps_usage_average", user="anna") == 1.5
    assert value(samples, "royalrender_user_ps_usage_max", user="anna") == 2.5
    assert value(samples, "royalrender_user_ps_needed", user="anna") == 6.5
    assert value(samples, "royalrender_user_render_licenses_needed", user="anna") == 3.0
    assert value(samples, "royalrender_user_job_sends", user="anna") == 11
    assert value(samples, "royalrender_user_job_finishes", user="anna") == 12
    assert value(samples, "royalrender_user_memory_average_bytes", user="anna") == 512 * MIB  # 536870912
    assert value(samples, "royalrender_user_memory_max_bytes", user="anna") == 2048 * MIB  # 2147483648
    # the reference gives avFrameTime/maxFrameTime no unit; the metric names say seconds: taken as they are
    assert value(samples, "royalrender_user_frame_time_average_seconds", user="anna") == 95
    assert value(samples, "royalrender_user_frame_time_max_seconds", user="anna") == 300
    assert value(samples, "royalrender_user_frames_rendered", user="anna") == 30
    assert value(samples, "royalrender_user_frames_left", user="anna") == 70
    assert slot_time(samples, "user", "anna") == PLAIN_SLOT[56]
    assert value(samples, "royalrender_project_jobs", project="tahoe", state="waiting") == 4
    assert value(samples, "royalrender_project_frames_left", project="tahoe") == 400
    assert slot_time(samples, "project", "tahoe") == PLAIN_SLOT[55]
    assert value(samples, "royalrender_render_app_frames_rendered", render_app="arnold") == 77
    assert slot_time(samples, "render_app", "arnold") == PLAIN_SLOT[54]


def test_rr8_numbering_96_slots_plain_day_exact_values(rr, tmp_path):
    """RR 8: ids 0..2, types 0..2, 96 slots: each name under its own dimension, its newest set slot, exact."""
    path = write_plain_day(rr, id_base=0, type_base=0)
    samples = run_once(rr.config(tmp_path))
    assert_plain_day_values(samples, path)


def test_bad_file_fails_the_load_with_the_vendors_error_text(rr, tmp_path):
    """A file the module refuses (loadFromFile False, getError() text) is a parse error; the file is down."""
    path = os.path.join(rr.daily_dir, "broken.stats")
    with open(path, "w") as handle:
        handle.write('{"magic": "NOT-RR", "class": "_dailyStats_data"}')
    os.utime(path, (PLAIN_MTIME, PLAIN_MTIME))
    samples = run_once(rr.config(tmp_path))
    assert up(samples, "daily_stats", path) == 0
    assert value(samples, "renderfarm_exporter_source_parse_errors_total", kind="royalrender_daily_stats",
                 path=path) == 1
    assert dimension_names(samples) == {"user": set(), "project": set(), "render_app": set()}


# -- 1. daily stats dimensions, decided from evidence -----------------------------------------

GHOST = [{"name": "ghost", "type": 0, "slots": {"56": {"slotSet": 1, "jobsRendering": 66}}}]


def assert_type_ids(samples, expected, evidence_mentions_id0=False):
    info = module_info(samples)
    assert info.get("daily_stats_type_ids") == expected, info
    if evidence_mentions_id0:
        assert "getJobsByType(0)" in info.get("daily_stats_evidence", ""), info


def test_rr8_numbering_is_reported_as_0_to_2(rr, tmp_path):
    """(d) RR 8: getJobsByType(0) returns the users, types 0..2 -> ids 0..2, said in module_info."""
    path = write_plain_day(rr, id_base=0, type_base=0)
    samples = run_once(rr.config(tmp_path))
    assert_plain_day_values(samples, path)
    assert_type_ids(samples, "0..2")


def test_rr9_module_with_timeline_class_uses_ids_1_to_3(rr9_timeline, tmp_path):
    """(a) the module has _dailyStats_timeline: ids 1..3 whatever getJobsByType(0) returns."""
    # getJobsByType(0) returns a plausible-looking list ("ghost", typed 0): with the timeline class it is
    # no RR 9 id, so ghost must appear nowhere
    path = write_plain_day(rr9_timeline, id_base=1, type_base=1, id0="list", id0_list=GHOST)
    samples = run_once(rr9_timeline.config(tmp_path))
    assert_plain_day_values(samples, path)
    assert_type_ids(samples, "1..3")


def test_rr9_ids_with_zero_based_types_use_ids_1_to_3(rr, tmp_path):
    """(b) no timeline class, id 1's entries all typed 0 -> ids 1..3 with 0-based types."""
    # types: users 0, projects 1, render apps 2 under ids 1, 2, 3; getJobsByType(0) would even answer with
    # a list (ghost), but (b) decides before (c)/(d) are looked at
    path = write_plain_day(rr, id_base=1, type_base=0, id0="list", id0_list=GHOST)
    samples = run_once(rr.config(tmp_path))
    assert_plain_day_values(samples, path)
    assert_type_ids(samples, "1..3")


@pytest.mark.parametrize("id0", ["raise", "none", "int", "empty"])
def test_rr9_getjobsbytype_0_unusable_decides_1_to_3(rr, tmp_path, id0):
    """(c) no timeline class, types 1..3: getJobsByType(0) raises / returns None / an int / [] -> ids 1..3."""
    # ids 1 and 2 both return entries (anna typed 1, tahoe typed 2); id 3 returns arnold typed 3
    path = write_plain_day(rr, id_base=1, type_base=1, id0=id0)
    samples = run_once(rr.config(tmp_path))
    assert_plain_day_values(samples, path)
    assert_type_ids(samples, "1..3", evidence_mentions_id0=True)


@pytest.mark.parametrize("id0", ["exit", "abort"])
def test_rr9_getjobsbytype_0_crashing_the_worker_is_avoided_and_decides_1_to_3(rr, tmp_path, start_daemon, id0):
    """(c) getJobsByType(0) kills the worker (os._exit / os.abort): the daemon retries without it, ids 1..3."""
    path = write_plain_day(rr, id_base=1, type_base=1, id0=id0)
    daemon = start_daemon("--config.file", rr.config(tmp_path), env=exporter_env())
    # the first read may crash (file down, backed off 1 s); the retry avoids the call
    seen = {}

    def settled():
        seen["samples"] = daemon.samples()
        return (slot_time(seen["samples"], "user", "anna") == PLAIN_SLOT[56]
                and up(seen["samples"], "daily_stats", path) == 1)

    try:
        wait_until(settled, 30, "anna's slot as a user and the daily file up")
    except AssertionError:
        last = seen.get("samples", {})
        raise AssertionError("after 30 s: names %s, daily file up %s, avoided %s" % (
            dimension_names(last), up(last, "daily_stats", path),
            value(last, "renderfarm_exporter_royalrender_avoided_calls", call=AVOIDED_ID0))) from None
    samples = daemon.samples()
    assert_plain_day_values(samples, path)
    assert value(samples, "renderfarm_exporter_royalrender_avoided_calls", call=AVOIDED_ID0) == 1
    assert_type_ids(samples, "1..3", evidence_mentions_id0=True)


# -- 2. daily slot times: 96 and 288 slots on both DST days of 2026 ----------------------------

def one_slot(name, slot, **fields):
    return {"name": name, "slots": {str(slot): dict({"slotSet": 1, "framesRendered": 10 + slot}, **fields)}}


def run_daily(rr, tmp_path, mtime, slots, users, projects, render_apps):
    # RR 8 numbering (ids 0..2, types 0..2), so only the slot times are under test here
    path = rr.write_daily(mtime, id_base=0, type_base=0, slots=slots, users=users, projects=projects,
                          render_apps=render_apps)
    samples = run_once(rr.config(tmp_path))
    assert up(samples, "daily_stats", path) == 1
    return samples


def assert_slots(samples, expected, withheld=()):
    """expected: {(dimension, name): unix start}; withheld: (dimension, name) with no series at all."""
    got = {key: slot_time(samples, *key) for key in expected}
    assert got == expected
    for dimension, name in withheld:
        assert series_of(samples, "royalrender_%s_" % dimension, **{dimension: name}) == [], name


def test_daily_96_slots_across_the_march_gap(rr, tmp_path):
    """Sun 2026-03-29, 96 slots of 900 s: before, inside and after 02:00 CET -> 03:00 CEST."""
    # mtime 03:40 CEST = 01:40Z = 1774748400; D = Mar 29 (newest set slot 14 starts 01:30Z, not after it)
    # 4 slots = 3600 s: a slot starting before 00:40Z (1774744800) is withheld
    samples = run_daily(rr, tmp_path, 1774748400, 96,
                        users=[one_slot("before", 7), one_slot("gap_start", 8)],
                        projects=[one_slot("gap_half", 10), one_slot("summer_start", 12)],
                        render_apps=[one_slot("after", 14), one_slot("stale", 3)])
    assert_slots(samples, {
        ("user", "before"): 1774745100,          # slot 7  = 01:45 CET (UTC+1)            = 00:45Z
        ("user", "gap_start"): 1774746000,       # slot 8  = 02:00, in the gap, UTC+1      = 01:00Z
        ("project", "gap_half"): 1774747800,     # slot 10 = 02:30, in the gap, UTC+1      = 01:30Z
        ("project", "summer_start"): 1774746000,  # slot 12 = 03:00 CEST (UTC+2)           = 01:00Z
        ("render_app", "after"): 1774747800,     # slot 14 = 03:30 CEST                    = 01:30Z
    }, withheld=[("render_app", "stale")])        # slot 3 = 00:45 CET = 23:45Z Mar 28: 6900 s > 3600 s
    assert value(samples, "royalrender_user_frames_rendered", user="gap_start") == 18
    assert stale(samples, "daily_stats") == 1
    # newest set slot (14) start - mtime = 1774747800 - 1774748400
    assert offset(samples, "daily_stats") == -600
    assert implausible(samples, "daily_stats") == 0


def test_daily_288_slots_across_the_march_gap(rr, tmp_path):
    """Sun 2026-03-29, 288 slots of 300 s: before, inside and after the gap."""
    # mtime 03:10 CEST = 01:10Z = 1774746600; newest set slot 37 starts 01:05Z -> D = Mar 29
    # 4 slots = 1200 s: a slot starting before 00:50Z (1774745400) is withheld
    samples = run_daily(rr, tmp_path, 1774746600, 288,
                        users=[one_slot("before", 23), one_slot("gap_start", 24)],
                        projects=[one_slot("gap_5", 25), one_slot("summer_start", 36)],
                        render_apps=[one_slot("after", 37), one_slot("stale", 20)])
    assert_slots(samples, {
        ("user", "before"): 1774745700,          # slot 23 = 01:55 CET            = 00:55Z
        ("user", "gap_start"): 1774746000,       # slot 24 = 02:00 (gap) UTC+1    = 01:00Z
        ("project", "gap_5"): 1774746300,        # slot 25 = 02:05 (gap) UTC+1    = 01:05Z
        ("project", "summer_start"): 1774746000,  # slot 36 = 03:00 CEST          = 01:00Z
        ("render_app", "after"): 1774746300,     # slot 37 = 03:05 CEST           = 01:05Z
    }, withheld=[("render_app", "stale")])        # slot 20 = 01:40 CET = 00:40Z: 1800 s > 1200 s
    assert stale(samples, "daily_stats") == 1
    assert offset(samples, "daily_stats") == -300  # 1774746300 - 1774746600


def test_daily_96_slots_in_the_repeated_october_hour(rr, tmp_path):
    """Sun 2026-10-25, 96 slots: before and inside 02:00-03:00 during its first pass, then after the switch."""
    # read 1: mtime 02:40 CEST (first pass) = 00:40Z = 1792888800; newest set slot 10 = 00:30Z -> D = Oct 25
    samples = run_daily(rr, tmp_path, 1792888800, 96, users=[one_slot("before", 7)],
                        projects=[one_slot("repeat_start", 8)], render_apps=[one_slot("repeat_half", 10)])
    assert_slots(samples, {
        ("user", "before"): 1792885500,          # slot 7  = 01:45 CEST = 23:45Z Oct 24
        ("project", "repeat_start"): 1792886400,  # slot 8  = 02:00, first (UTC+2) = 00:00Z
        ("render_app", "repeat_half"): 1792888200,  # slot 10 = 02:30, first (UTC+2) = 00:30Z
    })
    assert offset(samples, "daily_stats") == -600  # 1792888200 - 1792888800

    # read 2 (a fresh exporter): mtime 03:20 CET = 02:20Z = 1792894800; newest set slot 13 = 02:15Z
    # the repeated hour's slots were overwritten in its second pass, before this write: they are that pass's
    samples = run_daily(rr, tmp_path, 1792894800, 96, users=[one_slot("winter_start", 12), one_slot("early", 6)],
                        projects=[one_slot("winter_15", 13)], render_apps=[one_slot("repeat_late", 11)])
    assert_slots(samples, {
        ("user", "winter_start"): 1792893600,    # slot 12 = 03:00 CET (UTC+1) = 02:00Z
        ("project", "winter_15"): 1792894500,    # slot 13 = 03:15 CET         = 02:15Z
        ("render_app", "repeat_late"): 1792892700,  # slot 11 = 02:45, second pass (UTC+1) = 01:45Z
    }, withheld=[("user", "early")])  # slot 6 = 01:30 CEST = 23:30Z Oct 24: 10200 s > 3600 s
    assert stale(samples, "daily_stats") == 1
    assert offset(samples, "daily_stats") == -300  # 1792894500 - 1792894800


def test_daily_288_slots_in_the_repeated_october_hour(rr, tmp_path):
    """Sun 2026-10-25, 288 slots of 300 s: before, inside (during its first pass) and after the switch."""
    # read 1: mtime 02:10 CEST (first pass) = 00:10Z = 1792887000; newest set slot 25 = 00:05Z
    samples = run_daily(rr, tmp_path, 1792887000, 288, users=[one_slot("before", 23)],
                        projects=[one_slot("repeat_start", 24)], render_apps=[one_slot("repeat_5", 25)])
    assert_slots(samples, {
        ("user", "before"): 1792886100,          # slot 23 = 01:55 CEST = 23:55Z Oct 24
        ("project", "repeat_start"): 1792886400,  # slot 24 = 02:00 first (UTC+2) = 00:00Z
        ("render_app", "repeat_5"): 1792886700,  # slot 25 = 02:05 first (UTC+2) = 00:05Z
    })
    assert offset(samples, "daily_stats") == -300  # 1792886700 - 1792887000

    # read 2: mtime 03:10 CET = 02:10Z = 1792894200; newest set slot 37 = 02:05Z
    samples = run_daily(rr, tmp_path, 1792894200, 288, users=[one_slot("winter_start", 36), one_slot("early", 20)],
                        projects=[one_slot("winter_5", 37)], render_apps=[one_slot("repeat_late", 35)])
    assert_slots(samples, {
        ("user", "winter_start"): 1792893600,    # slot 36 = 03:00 CET = 02:00Z
        ("project", "winter_5"): 1792893900,     # slot 37 = 03:05 CET = 02:05Z
        ("render_app", "repeat_late"): 1792893300,  # slot 35 = 02:55, second pass = 01:55Z: 900 s <= 1200 s
    }, withheld=[("user", "early")])  # slot 20 = 01:40 CEST = 23:40Z Oct 24
    assert stale(samples, "daily_stats") == 1
    assert offset(samples, "daily_stats") == -300  # 1792893900 - 1792894200


def test_daily_file_written_after_midnight_belongs_to_the_day_before(rr, tmp_path):
    """D is the day before when the newest set slot would start after the mtime on the mtime's date."""
    # mtime Thu 2026-12-03 00:05 CET = Dec 2 23:05Z = 1796252700. Newest set slot 95 on Dec 3 would be
    # 23:45 CET Dec 3, after the mtime -> D = Dec 2.
    samples = run_daily(rr, tmp_path, 1796252700, 96, users=[one_slot("late", 95)],
                        projects=[one_slot("early", 0)], render_apps=[one_slot("late_app", 94)])
    assert_slots(samples, {
        ("user", "late"): 1796251500,            # slot 95 = Dec 2 23:45 CET = 22:45Z
        ("render_app", "late_app"): 1796250600,  # slot 94 = Dec 2 23:30 CET = 22:30Z
    }, withheld=[("project", "early")])           # slot 0 = Dec 2 00:00 CET = Dec 1 23:00Z: a day old
    assert offset(samples, "daily_stats") == -1200  # 1796251500 - 1796252700
    assert implausible(samples, "daily_stats") == 0


# -- 2./3./4. server stats ---------------------------------------------------------------------
#
# Last save Fri 2026-11-20 14:30:00 CET: local seconds since 1970 (as if UTC) = 1795185000
# (date -u -d '2026-11-20 14:30 UTC' +%s); Unix = 13:30Z = 1795181400.
#   lastSaveDay with d = 60: 1795185000 / 60 = 29919750; with d = 90: 1795185000 / 90 = 19946500.
#   52200 s after local midnight: slot 870 of 60 s, slot 580 of 90 s.
SAVED_LOCAL = 1795185000
SAVED_UNIX = 1795181400
SERVER_VALUES = {"slot_used": 1, "clients_free": 3, "clients_rendering": 5, "clients_disabled": 1,
                 "jobs_total": 42, "jobs_rendering": 7, "jobs_unfinished": 9, "CpuMachine": 37, "CpuProcess": 4}
OLDER_VALUES = dict(SERVER_VALUES, clients_rendering=99, jobs_total=1)
JUNK = dict(SERVER_VALUES, clients_rendering=555, jobs_total=555)


def run_server(rr, tmp_path, mtime, timezone=BERLIN, **data):
    rr.write_server(mtime, **data)
    samples = run_once(rr.config(tmp_path, timezone=timezone))
    assert up(samples, "server_stats", rr.server) == 1
    return samples


def assert_server_values(samples):
    assert value(samples, "royalrender_clients", state="free") == 3
    assert value(samples, "royalrender_clients", state="rendering") == 5
    assert value(samples, "royalrender_clients", state="disabled") == 1
    assert value(samples, "royalrender_jobs") == 42
    assert value(samples, "royalrender_jobs_rendering") == 7
    assert value(samples, "royalrender_jobs_unfinished") == 9
    assert value(samples, "royalrender_server_cpu_ratio", scope="machine") == 0.37  # 37 % of 0..100
    assert value(samples, "royalrender_server_cpu_ratio", scope="process") == 0.04


def test_server_1440_slots_walks_back_to_the_newest_used_slot(rr, tmp_path):
    """dayMax 1440, lastSaveDay = local/60: last save slot 870 unused, 869 unused, 868 used -> slot 868."""
    # mtime 13:30:20Z = 1795181420; d = 60 gives 1795181400 (-20 s), d = 90 gives a 2055 date -> d = 60
    samples = run_server(rr, tmp_path, 1795181420, dayMax=1440, last_save_local=SAVED_LOCAL,
                         last_save_divisor="slot",
                         day={"868": SERVER_VALUES, "865": OLDER_VALUES, "871": JUNK})  # 871: yesterday's
    assert value(samples, "royalrender_server_stats_last_save_timestamp_seconds") == SAVED_UNIX
    # slot 868 = 14:28 CET = 13:28Z
    assert value(samples, "royalrender_server_stats_slot_timestamp_seconds") == 1795181280
    assert_server_values(samples)
    assert offset(samples, "server_stats") == -20  # 1795181400 - 1795181420
    assert implausible(samples, "server_stats") == 0
    assert stale(samples, "server_stats") == 0


def test_server_lastsaveday_divided_by_90_with_1440_slots(rr, tmp_path):
    """The reference's other reading: lastSaveDay = local/90 with dayMax 1440 -> d = 90, last save right."""
    # lastSaveDay = 19946500; d = 60 would give 1196790000 local (1997), d = 90 gives 1795185000 -> d = 90
    samples = run_server(rr, tmp_path, 1795181420, dayMax=1440, last_save_local=SAVED_LOCAL,
                         last_save_divisor=90, day={"870": SERVER_VALUES, "869": OLDER_VALUES})
    assert value(samples, "royalrender_server_stats_last_save_timestamp_seconds") == SAVED_UNIX
    # slot floor(52200 / 60) = 870 = 14:30 CET = 13:30Z
    assert value(samples, "royalrender_server_stats_slot_timestamp_seconds") == SAVED_UNIX
    assert_server_values(samples)
    assert offset(samples, "server_stats") == -20
    assert implausible(samples, "server_stats") == 0


def test_server_rr8_960_slots_of_90_seconds(rr, tmp_path):
    """RR 8 shape: dayMax 960 (L = 90), lastSaveDay = local/90: slot 580 unused, 577 used (3 back)."""
    samples = run_server(rr, tmp_path, 1795181420, dayMax=960, last_save_local=SAVED_LOCAL,
                         last_save_divisor="slot",
                         day={"577": SERVER_VALUES, "575": OLDER_VALUES, "581": JUNK})
    assert value(samples, "royalrender_server_stats_last_save_timestamp_seconds") == SAVED_UNIX
    # slot 577 = 577 * 90 = 51930 s = 14:25:30 CET = 13:25:30Z = 1795181400 - 270
    assert value(samples, "royalrender_server_stats_slot_timestamp_seconds") == 1795181130
    assert_server_values(samples)
    assert offset(samples, "server_stats") == -20


def test_server_slot_only_from_yesterday_is_stale(rr, tmp_path):
    """Today's slots all unused, only day(1439) (yesterday 23:59) used: no slot values, stale counted once."""
    # last save 10:00:00 CET Nov 20: local 1795168800, lastSaveDay = 29919480, Unix 09:00Z = 1795165200;
    # slot 600; walking back 600..596 finds nothing used; mtime 09:00:30Z = 1795165230
    samples = run_server(rr, tmp_path, 1795165230, dayMax=1440, last_save_local=1795168800,
                         last_save_divisor="slot", day={"1439": SERVER_VALUES})
    assert value(samples, "royalrender_server_stats_last_save_timestamp_seconds") == 1795165200
    rr_series = sorted({name for (name, _) in samples if name.startswith("royalrender_")})
    assert rr_series == ["royalrender_server_stats_last_save_timestamp_seconds"]
    assert stale(samples, "server_stats") == 1
    assert offset(samples, "server_stats") == -30  # 1795165200 - 1795165230
    assert implausible(samples, "server_stats") == 0


def test_server_last_save_in_the_repeated_october_hour(rr, tmp_path):
    """Last save Sun 2026-10-25 02:30 local (the repeated hour): read at its first occurrence, UTC+2."""
    # local 1792886400 + 9000 = 1792895400, lastSaveDay = 29881590; 02:30 CEST = 00:30Z = 1792888200
    # slot 150 (9000 / 60); mtime 00:30:10Z = 1792888210
    samples = run_server(rr, tmp_path, 1792888210, dayMax=1440, last_save_local=1792895400,
                         last_save_divisor="slot", day={"150": SERVER_VALUES})
    assert value(samples, "royalrender_server_stats_last_save_timestamp_seconds") == 1792888200
    assert value(samples, "royalrender_server_stats_slot_timestamp_seconds") == 1792888200
    assert_server_values(samples)
    assert offset(samples, "server_stats") == -10
    assert implausible(samples, "server_stats") == 0


def test_timezone_unset_server_berlin_winter_is_an_hour_ahead_and_implausible(rr, tmp_path):
    """No royalrender.timezone on a UTC machine, RR writing Berlin wall clock (CET): offset +3600, counted."""
    # RR saved at 14:30 CET = 13:30Z, lastSaveDay = 29919750; the file's mtime is the real save, 1795181400.
    # Read as UTC: d = 60 gives 14:30Z = 1795185000 (d = 90: 2055); offset 1795185000 - 1795181400 = +3600,
    # more than 300 + 60 s ahead -> implausible
    samples = run_server(rr, tmp_path, SAVED_UNIX, timezone=None, dayMax=1440, last_save_local=SAVED_LOCAL,
                         last_save_divisor="slot", day={"870": SERVER_VALUES})
    assert value(samples, "royalrender_server_stats_last_save_timestamp_seconds") == 1795185000
    assert value(samples, "royalrender_server_stats_slot_timestamp_seconds") == 1795185000
    assert offset(samples, "server_stats") == 3600
    assert implausible(samples, "server_stats") == 1


# -- 2./3./4. client stats ---------------------------------------------------------------------

def client_item(cpu, **fields):
    return dict({"hasData": 1, "userLoggedIn": 1, "cpuTotal": cpu, "gpuTotal": 0.5, "memTotal10MB": 1234,
                 "threads": [{"status": 5, "cpuRender": 0.75, "memRender10MB": 300, "jobIDShort": 0xBEEF},
                             {"status": 3, "cpuRender": 0.125, "memRender10MB": 20, "jobIDShort": 0xCAFE}]},
                **fields)


def run_client(rr, tmp_path, mtime, timezone=BERLIN, **data):
    path = rr.write_client("render01", mtime, **data)
    samples = run_once(rr.config(tmp_path, timezone=timezone))
    assert up(samples, "client_stats", path) == 1
    return samples


def test_client_rr9_2880_items_newest_item_of_the_last_day(rr, tmp_path):
    """dataMax 2880 (30 s): days(179), newest item with hasData(), its start in Berlin time, exact values."""
    # day 20777 = 2026-11-20; item 1700 = 51000 s = 14:10:00 CET: local 20777*86400 + 51000 = 1795183800
    # -> 13:10Z = 1795180200. mtime 13:10:20Z = 1795180220.
    hourly = {"14": [{"framesDone": 3, "jobCrashed": 1, "jobAborted": 0, "jobSuccessful": 2},
                     {"framesDone": 4, "jobCrashed": 0, "jobAborted": 1, "jobSuccessful": 1}],
              "13": [{"framesDone": 900, "jobCrashed": 9, "jobAborted": 9, "jobSuccessful": 9}]}
    days = {"179": {"day": 20777, "daySet": 1, "hourly": hourly,
                    "data": {"1700": client_item(0.25), "1699": client_item(0.99),
                             "1701": dict(client_item(0.66), hasData=0)}},
            "178": {"day": 20776, "daySet": 1, "data": {"2800": client_item(0.77)}}}
    samples = run_client(rr, tmp_path, 1795180220, dataMax=2880, daysMax=180, days=days)
    assert value(samples, "royalrender_client_stats_timestamp_seconds", client="render01") == 1795180200
    assert value(samples, "royalrender_client_cpu_ratio", client="render01") == 0.25
    assert value(samples, "royalrender_client_gpu_ratio", client="render01") == 0.5
    assert value(samples, "royalrender_client_memory_bytes", client="render01") == 12939427840  # 12340 MiB
    assert value(samples, "royalrender_client_user_logged_in", client="render01") == 1
    assert value(samples, "royalrender_client_job_threads", client="render01") == 2
    assert value(samples, "royalrender_client_job_thread_cpu_ratio", client="render01", thread="0") == 0.75
    assert value(samples, "royalrender_client_job_thread_memory_bytes", client="render01",
                 thread="0") == 3145728000  # 3000 MiB
    assert value(samples, "royalrender_client_job_thread_status", client="render01", thread="1") == 3
    # hour 14 of the item, summed over its two job threads
    assert value(samples, "royalrender_client_hour_frames_done", client="render01") == 7
    assert value(samples, "royalrender_client_hour_job_crashes", client="render01") == 1
    assert value(samples, "royalrender_client_hour_job_aborts", client="render01") == 1
    assert value(samples, "royalrender_client_hour_job_successes", client="render01") == 3
    assert offset(samples, "client_stats") == -20  # 1795180200 - 1795180220
    assert implausible(samples, "client_stats") == 0


def test_client_rr8_4320_items_in_the_repeated_october_hour(rr, tmp_path):
    """dataMax 4320 (20 s): item 450 of Sun 2026-10-25 = 02:30, first occurrence (UTC+2) = 00:30Z."""
    # day 20751 = 2026-10-25; 450 * 20 = 9000 s = 02:30:00 -> 00:30Z = 1792888200; mtime 00:30:30Z
    days = {"179": {"day": 20751, "daySet": 1, "data": {"450": client_item(0.5), "449": client_item(0.1)}}}
    samples = run_client(rr, tmp_path, 1792888230, dataMax=4320, daysMax=180, days=days)
    assert value(samples, "royalrender_client_stats_timestamp_seconds", client="render01") == 1792888200
    assert value(samples, "royalrender_client_cpu_ratio", client="render01") == 0.5
    assert offset(samples, "client_stats") == -30
    assert implausible(samples, "client_stats") == 0


def test_client_item_older_than_four_items_is_withheld(rr, tmp_path):
    """The newest item starts 300 s before the mtime (> 4 x 30 s): none of its gauges, stale counted once."""
    # item 1700 of 2026-11-20 = 13:10Z = 1795180200; mtime 13:15Z = 1795180500
    days = {"179": {"day": 20777, "daySet": 1, "data": {"1700": client_item(0.25)}}}
    samples = run_client(rr, tmp_path, 1795180500, dataMax=2880, daysMax=180, days=days)
    for name in ("royalrender_client_stats_timestamp_seconds", "royalrender_client_cpu_ratio",
                 "royalrender_client_gpu_ratio", "royalrender_client_memory_bytes",
                 "royalrender_client_user_logged_in", "royalrender_client_job_threads",
                 "royalrender_client_job_thread_"):
        assert series_of(samples, name, client="render01") == [], name
    assert stale(samples, "client_stats") == 1
    # -300 s is not more than 300 + 30 s in the past: not implausible
    assert offset(samples, "client_stats") == -300
    assert implausible(samples, "client_stats") == 0


def test_timezone_unset_client_berlin_summer_is_two_hours_ahead_and_implausible(rr, tmp_path):
    """No royalrender.timezone on a UTC machine, RR writing Berlin summer wall clock: offset +7200, counted."""
    # day 20649 = 2026-07-15; item 1440 = 12:00:00 Berlin (CEST) = 10:00Z real = the mtime 1784109600.
    # Read as UTC: 20649*86400 + 43200 = 1784116800 -> offset +7200 > 300 + 30 -> implausible
    days = {"179": {"day": 20649, "daySet": 1, "data": {"1440": client_item(0.25)}}}
    samples = run_client(rr, tmp_path, 1784109600, timezone=None, dataMax=2880, daysMax=180, days=days)
    assert value(samples, "royalrender_client_stats_timestamp_seconds", client="render01") == 1784116800
    assert offset(samples, "client_stats") == 7200
    assert implausible(samples, "client_stats") == 1
