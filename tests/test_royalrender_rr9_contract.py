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
