"""Each RR file kind's extractor against the stand-in module, in both RR shapes, with exact values."""

import copy
import json
import os
import re
import time

import pytest

from exporter.budget import OTHER
from exporter.royalrender import client_stats, daily_stats, server_stats
from exporter.royalrender.kinds import KINDS
from exporter.royalrender.times import Written
from exporter.royalrender.timezone import Timezone
from exporter.royalrender.vendor import extractors
from exporter.royalrender.vendor.calls import MIB, LoadFailed
from exporter.simulation import simformat, standin
from exporter.simulation.simulator import YEAR_SLOTS_KEPT, RrFarmSimulator, local_seconds

pytestmark = pytest.mark.inprocess

NOW = 1795300000.0  # a fixed clock makes every slot index predictable


@pytest.fixture(params=["rr9", "rr8"])
def farm(request, tmp_path):
    sim = RrFarmSimulator(str(tmp_path / "rr"), clients=3, shape=request.param, seed=7, clock=lambda: NOW)
    sim.write_all()
    return sim


def written(path):
    """The stand-in farm writes in the machine's zone, stamping each file with its (fixed) clock."""
    return Written(os.stat(path).st_mtime, Timezone().zone())


def local_to_unix(local_seconds):
    return Written(0, Timezone().zone()).unix(local_seconds)


def extract(kind, path, options=None):
    """What the worker would reply for one file, as the daemon interprets it (member failures must be none)."""
    data, failures = extractors.run(standin, kind, "extract", path, options or {})
    assert failures == {}, failures
    return next(k for k in KINDS if k.name == kind).interpret(data, written(path))


def payload(path):
    with open(path) as handle:
        return json.load(handle)["data"]


def rewrite(path, cls, change):
    """Changes a file as its writer would at the farm's (fixed) clock: the modification time stays."""
    data = payload(path)
    change(data)
    simformat.write(path, cls, data, mtime=os.stat(path).st_mtime)


def test_server_stats_latest_slot_with_aliases_and_units(farm):
    path = farm.path("server_stats")
    raw = payload(path)
    slot_seconds = 86400.0 / raw["dayMax"]
    assert slot_seconds == (60.0 if farm.shape == "rr9" else 90.0)
    latest = raw["day"][str(raw["lastSaveDay"] % raw["dayMax"])]
    names = standin.RR8_NAMES if farm.shape == "rr8" else {}

    result = extract("server_stats", path, {})
    slot = result["slot"]
    assert result["slot_seconds"] == slot_seconds
    assert slot["time"] == result["last_save_time"] == local_to_unix(raw["lastSaveDay"] * slot_seconds)
    assert slot["clients_rendering"] == latest[names.get("clients_rendering", "clients_rendering")]
    assert slot["clients_free"] == latest["clients_free"]
    assert slot["cpu_process"] == pytest.approx(latest["CpuProcess"] / 100)
    assert slot["memory_machine"] == latest[names.get("serverMemUsage_Machine", "serverMemUsage_Machine")] * MIB
    frames = latest[names.get("framesPerMin", "framesPerMin")]
    assert slot["frames_per_minute"] == pytest.approx(frames * 60 / slot_seconds)
    assert slot["clients_temperature"] == latest[names.get("clients_avTemperature", "clients_avTemperature")]
    assert slot["frames_left"] == latest[names.get("framesLeft", "framesLeft")]


def test_server_stats_unused_slot_after_midnight_takes_yesterdays_last(farm):
    path = farm.path("server_stats")
    day_max = payload(path)["dayMax"]
    slot_seconds = 86400.0 / day_max
    midnight_index = int(local_seconds(NOW) // 86400) * day_max  # lastSaveDay of the first slot of today

    def just_after_midnight(data):
        data["lastSaveDay"] = midnight_index
        data["day"]["0"] = {}  # not yet written today
        data["day"][str(day_max - 1)]["clients_free"] = 77

    rewrite(path, "_rrGlobalStatsLS", just_after_midnight)
    slot = extract("server_stats", path, {})["slot"]
    assert slot["clients_free"] == 77
    assert slot["time"] == local_to_unix((midnight_index - 1) * slot_seconds)


def test_server_stats_field_missing_in_this_rr_version_drops_only_that_value(farm):
    path = farm.path("server_stats")

    def drop_temperature(data):
        for item in data["day"].values():
            item.pop("serverTemperature", None)

    rewrite(path, "_rrGlobalStatsLS", drop_temperature)
    original = standin._rrGlobalStats_item.__init__

    def without_temperature(self, values, names):
        original(self, values, tuple(n for n in names if n != "serverTemperature"))

    standin._rrGlobalStats_item.__init__ = without_temperature
    try:
        raw, failures = extractors.run(standin, "server_stats", "extract", path, {})
    finally:
        standin._rrGlobalStats_item.__init__ = original
    assert failures == {"_rrGlobalStats_item.serverTemperature": "missing"}
    result = server_stats.interpret(raw, written(path))
    assert result["slot"]["server_temperature"] is None
    assert result["slot"]["jobs_total"] is not None
    names = {family.name for family in server_stats.families({path: result}, {})}
    assert "royalrender_server_temperature_celsius" in names
    temperature = next(f for f in server_stats.families({path: result}, {})
                       if f.name == "royalrender_server_temperature_celsius")
    assert temperature.samples == []


def test_server_stats_no_used_slot(farm):
    path = farm.path("server_stats")
    rewrite(path, "_rrGlobalStatsLS", lambda data: data.update(day={}))
    result = extract("server_stats", path, {})
    assert result["slot"] is None and result["last_save_time"] > 0


def test_load_failure_carries_the_modules_error(tmp_path):
    broken = tmp_path / "server_stats.db"
    broken.write_bytes(b"\x00\x01 not stats")
    with pytest.raises(LoadFailed, match="not a stand-in statistics file|cannot load"):
        extract("server_stats", str(broken), {})
    with pytest.raises(LoadFailed, match="file not found"):
        extract("server_stats", str(tmp_path / "missing.db"), {})


def test_daily_stats_type_ids_of_both_versions_map_to_the_same_dimensions(farm):
    path = farm.path("daily_stats")
    result = extract("daily_stats", path, {"series_budget": 6000})
    assert set(result["user"]) == {"anna", "bjorn", "chen", "dara", "emil", "fatima"}
    assert set(result["project"]) == {"FancyDrink-Commercial", "Feature_SEQ02", "Teaser_v12"}
    assert set(result["render_app"]) == {"Maya", "Houdini", "Nuke", "Blender"}
    raw = payload(path)
    anna = next(e for e in raw["stats"] if e["name"] == "anna")
    last = max(int(i) for i, slot in anna["slots"].items() if slot["slotSet"])
    expected = anna["slots"][str(last)]
    assert result["user"]["anna"]["jobs_rendering"] == expected["jobsRendering"]
    assert result["user"]["anna"]["memory_max"] == expected["maxMemUsageMB"] * MIB
    midnight = time.mktime(time.localtime(os.stat(path).st_mtime)[:3] + (0, 0, 0, 0, 0, -1))
    assert result["user"]["anna"]["time"] == midnight + last * 900


def test_daily_stats_latest_set_slot_skips_unset_ones(farm):
    path = farm.path("daily_stats")

    def unset_latest(data):
        for entry in data["stats"]:
            newest = max(int(i) for i in entry["slots"])
            entry["slots"][str(newest)]["slotSet"] = False
            entry["slots"][str(newest - 1)]["framesLeft"] = 4242

    rewrite(path, "_dailyStats_data", unset_latest)
    result = extract("daily_stats", path, {})
    assert result["project"]["Teaser_v12"]["frames_left"] == 4242


def test_daily_stats_budget_admits_the_most_recently_active_and_sums_the_rest_into_other(farm):
    result = extract("daily_stats", farm.path("daily_stats"), {})
    options = {"series_budget": daily_stats.SERIES_PER_NAME * 3}  # two names of their own, one for __other__
    bound = daily_stats.KIND.budget(options)
    families = {f.name: f for f in daily_stats.families({"x": bound(result)}, options)}
    users = {s.labels["user"] for s in families["royalrender_user_frames_left"].samples}
    by_activity = sorted(result["user"], key=lambda u: (-result["user"][u]["time"], u))
    assert users == set(by_activity[:2]) | {OTHER}
    other = next(s.value for s in families["royalrender_user_frames_left"].samples if s.labels["user"] == OTHER)
    assert other == sum(result["user"][u]["frames_left"] for u in by_activity[2:])
    assert not any(s.labels["user"] == OTHER for s in families["royalrender_user_ps_usage_average"].samples)


def test_daily_stats_budget_keeps_its_names_from_read_to_read(farm):
    """First come, stays admitted: a newcomer, however active, does not push an admitted name into __other__."""
    result = extract("daily_stats", farm.path("daily_stats"), {})
    bound = daily_stats.KIND.budget({"series_budget": daily_stats.SERIES_PER_NAME * 3})
    admitted = set(bound(result)["user"]) - {OTHER}
    later = copy.deepcopy(result)
    newest = max(row["time"] for row in result["user"].values())
    later["user"]["aaron"] = dict(result["user"][sorted(admitted)[0]], time=newest + 900)
    gone = sorted(admitted)[1]
    del later["user"][gone]  # gone from today's file: its place is not handed to another name
    assert set(bound(later)["user"]) == admitted - {gone} | {OTHER}
    assert set(bound(result)["user"]) == admitted | {OTHER}, "the same data, the same series"


def test_client_stats_latest_item_threads_and_hour(farm):
    client = farm.clients[0]
    path = farm.path("client_stats", client)
    raw = payload(path)["days"]["179"]
    newest = max(raw["data"], key=int)
    item = raw["data"][newest]
    result = extract("client_stats", path, {})["item"]
    assert result["cpu"] == item["cpuTotal"] and result["memory"] == item["memTotal10MB"] * 10 * MIB
    assert [t["memory"] for t in result["threads"]] == [t["memRender10MB"] * 10 * MIB for t in item["threads"]]
    item_seconds = 86400.0 / (2880 if farm.shape == "rr9" else 4320)
    assert result["time"] == local_to_unix(raw["day"] * 86400 + int(newest) * item_seconds)
    hour = list(raw["hourly"].values())[0]
    assert result["hour"]["frames_done"] == sum(t["framesDone"] for t in hour)
    options = {"client_from_path": re.compile(r"/(?P<client>[^/]+)\.db$")}
    assert client_stats.client_name(path, options) == client
    assert client_stats.client_name("/x/render07.stats", {}) == "render07"


def test_client_info_wake_on_lan(farm):
    path = farm.path("client_info")
    result = extract("client_info", path, {})
    by_name = {c["name"]: c for c in result["clients"]}
    assert set(by_name) == set(farm.clients)
    raw = {c["saveNameCopy"]: c for c in payload(path)["clients"]}
    for name, client in by_name.items():
        wol = raw[name]["wols"][0]
        assert client["last_wol_success"] == int(wol["success"])
        assert client["wol_failed_tries"] == raw[name]["WOLTryCount"]
        assert client["last_wol_boot_seconds"] == (wol["bootTime"] if wol["success"] else None)


def test_stand_in_index_semantics(farm):
    stats = standin._rrGlobalStatsLS()
    assert stats.loadFromFile(farm.path("server_stats"))
    assert stats.getError() == ""
    with pytest.raises(IndexError):
        stats.day(stats.dayMax())
    assert stats.month(stats.monthMax() - 1).slot_used is True  # pushed down: the newest at Max()-1
    assert stats.year(stats.yearMax() - 1 - YEAR_SLOTS_KEPT).slot_used is False
    daily = standin._dailyStats_data()
    assert daily.loadFromFile(farm.path("daily_stats"), True)
    assert daily.jobTypeCount() == 3
    user_id = 0 if farm.shape == "rr8" else 1
    assert {d.name for d in daily.getJobsByType(user_id)} >= {"anna", "bjorn"}
    assert daily.getJobsByType(user_id)[0].timeSlotCount() == 96
    client = standin._rrClientStats_data()
    assert client.loadFromFile(farm.path("client_stats", farm.clients[0])) and client.StructureID == 0xA101
    assert client.days(client.daysMax() - 2).daySet is False
    assert not standin._server_clientInfo().loadFromFile(farm.path("server_stats"))


def test_render_time_latest_and_mean_with_budget(farm):
    from exporter.royalrender import render_time

    path = farm.path("render_time")
    raw = payload(path)["projects"]
    result = extract("render_time", path, {})
    first = raw[0]["layers"][0]
    layer = result["projects"][0]["layers"][0]
    assert layer["latest"] == first["times"][0]
    assert layer["mean"] == pytest.approx(sum(first["times"]) / len(first["times"]))
    options = {"series_budget": render_time.SERIES_PER_LAYER * 4}  # 3 of the 9 layers fit, and __other__
    bound = render_time.KIND.budget(options)
    families = {f.name: f for f in render_time.families({path: bound(result)}, options)}
    kept = {(s.labels["project"], s.labels["layer"]) for s in families[
        "royalrender_render_time_latest_job_frame_ps_seconds"].samples}
    by_use = sorted(result["projects"], key=lambda p: (-p["last_used_time"], p["name"]))
    pairs = [(p["name"], layer["name"]) for p in by_use for layer in p["layers"]]
    assert kept == set(pairs[:3]), "the layers of the most recently used projects come first"
    assert families["royalrender_render_time_layers_dropped"].samples[0].value == len(pairs) - 3
    jobs = {(s.labels["project"], s.labels["layer"]): s.value
            for s in families["royalrender_render_time_jobs_added"].samples}
    rest = [layer for p in by_use for layer in p["layers"]
            if (p["name"], layer["name"]) not in kept and layer["jobs_added"] is not None]
    assert jobs[(OTHER, OTHER)] == sum(layer["jobs_added"] for layer in rest)
    projects = copy.deepcopy(result["projects"])
    for p in projects:
        p["last_used_time"] = -p["last_used_time"]  # the least recently used is now the most recent
    again = bound(dict(result, projects=projects))
    assert {(p["name"], layer["name"]) for p in again["projects"] for layer in p["layers"]} == kept | {(OTHER, OTHER)}


def test_render_time_needs_loadfile_not_loadfromfile(farm):
    stats = standin._StatsRenderTime()
    assert stats.loadFromFile is None
    assert stats.loadFile(farm.path("render_time")) and stats.count == 3


def test_licenses_regions_set_and_default(farm):
    rows = extract("licenses", farm.path("licenses"), {})["licenses"]
    arnold = {r["region"]: r for r in rows if r["render_app"] == "Arnold"}
    assert set(arnold) == {"default", "render_farm"}  # unset regions use Default's settings
    assert arnold["default"]["count"] == 40 and arnold["render_farm"]["cost"] == 1.0
    sapphire = {r["region"]: r for r in rows if r["plugin"] == "Sapphire"}
    assert sapphire["cloud"]["unlimited"] == 1 and sapphire["default"]["unlimited"] == 0


def test_client_groups_as_info_series(farm):
    from exporter.royalrender import client_groups

    result = extract("client_groups", farm.path("client_groups"), {})
    assert result["groups"]["All"] == sorted(farm.clients)
    families = {f.name: f for f in client_groups.families({"g": result}, {})}
    members = {(s.labels["group"], s.labels["client"]) for s in families["royalrender_client_group"].samples}
    assert ("GPU", farm.clients[0]) in members and ("Nuke", farm.clients[0]) not in members
    assert {s.name for s in families["royalrender_client_group"].samples} == {"royalrender_client_group_info"}


def test_frame_stats_per_job(farm):
    from exporter.royalrender import frame_stats

    path = farm.path("frame_stats", "job0003")
    raw = payload(path)["frames"]
    result = extract("frame_stats", path, {})
    assert result["frames"] == len(raw)
    assert result["render_seconds_max"] == max(f["renderTime5Sec"] for f in raw) * 5
    assert result["memory_max"] == max(p["jobMemoryMB"] for f in raw for p in f["parts"]) * MIB
    assert frame_stats.job_name(path, {}) == "job0003"


def test_simulator_saves_each_kind_on_the_vendors_cadence(tmp_path):
    sim = RrFarmSimulator(str(tmp_path / "rr"), clients=2, shape="rr8", seed=1, speed=1000.0)
    assert sim.cadence()["server_stats"] == 90.0 and sim.cadence()["client_stats"] == 20.0
    sim.write_all()
    started = time.monotonic()
    sim.step(started)  # first step: everything is due
    # A save writes a new file and renames it over the old one: a new inode (mtimes can tie within a tick).
    stamps = {kind: os.stat(sim.path(kind, sim.clients[0])).st_ino
              for kind in ("server_stats", "client_stats", "daily_stats")}
    sim.step(started + 0.1)  # 90 s / 1000 = 0.09 s: server stats due again, daily stats (0.9 s) not yet
    assert os.stat(sim.path("server_stats")).st_ino != stamps["server_stats"]
    assert os.stat(sim.path("client_stats", sim.clients[0])).st_ino != stamps["client_stats"]
    assert os.stat(sim.path("daily_stats")).st_ino == stamps["daily_stats"]
