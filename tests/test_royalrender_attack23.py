"""Adversarial cases (attack 23) for RR numbering, local-time conversion, stale slots and plausibility.

Harness: the independent reference fake (tests/reference_rr_module.py) through the helpers of
tests/test_royalrender_rr9_contract.py. Every expected value is derived by hand from the vendor
reference / royalrender-facts.md / docs/royalrender.md; Unix times were computed with
``date -u -d '<time> UTC' +%s`` and checked with ``TZ=<zone> date -d @<unix>`` and ``zdump``:

    Europe/Berlin, Sun 2026-10-25: 03:00 CEST falls back to 02:00 CET at 01:00Z, so the wall
    clock shows 02:00-03:00 twice: first 00:00Z-01:00Z (CEST, UTC+2), then 01:00Z-02:00Z (CET).
    Australia/Lord_Howe, Sun 2026-04-05: 02:00 (+11) falls back to 01:30 (+10:30) at 15:00Z Apr 4,
    so 01:30-02:00 is shown twice: first 14:30Z-15:00Z, then 15:00Z-15:30Z.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import REPO, parse_samples, value, wait_until
from test_royalrender_rr9_contract import (
    BERLIN,
    PLAIN_SLOT,
    SAVED_LOCAL,
    SAVED_UNIX,
    SERVER_VALUES,
    RRFolder,
    client_item,
    dimension_names,
    exporter_env,
    implausible,
    module_info,
    one_slot,
    run_client,
    run_daily,
    run_once,
    run_server,
    slot_time,
    stale,
    up,
    write_plain_day,
)

pytestmark = pytest.mark.daemon

assert BERLIN  # the zone of every case below unless said otherwise


@pytest.fixture
def rr(tmp_path):
    return RRFolder(tmp_path / "rr")


@pytest.fixture
def rr9_timeline(tmp_path):
    return RRFolder(tmp_path / "rr", timeline=True)


# -- 1. the repeated hour, read while the clock is in its SECOND pass --------------------------------
#
# The contract reads a repeated wall-clock time at its first occurrence (fold=0). The existing tests
# only write files during the first pass. A file written during the second pass (02:xx CET on
# 2026-10-25, i.e. 01:xxZ) states times of that same second pass; RR's own clock has just written
# them. The reference: the data item / slot covers "the first 30 seconds of the day ..." style
# wall-clock intervals and RR writes them as it goes, so the newest item was written seconds ago.
# docs/royalrender.md, Plausibility: "a whole number of hours is almost always royalrender.timezone
# unset or wrong" -- here the zone IS right, so nothing may be flagged and nothing withheld.


def test_client_item_in_second_pass_of_repeated_hour_is_current_and_plausible(rr, tmp_path):
    # day 20751 = 2026-10-25; item 300 (dataMax 2880, 30 s) = 9000 s = 02:30:00 wall.
    # File written 02:30:10 CET (second pass) = 01:30:10Z = 1792891810: the item started 10 s
    # before, at 02:30:00 CET = 01:30:00Z = 1792891800.
    days = {"179": {"day": 20751, "daySet": 1, "data": {"300": client_item(0.5)}}}
    samples = run_client(rr, tmp_path, 1792891810, dataMax=2880, daysMax=180, days=days)
    assert implausible(samples, "client_stats") == 0
    assert value(samples, "royalrender_client_cpu_ratio", client="render01") == 0.5
    assert value(samples, "royalrender_client_stats_timestamp_seconds", client="render01") == 1792891800
    assert stale(samples, "client_stats") == 0


def test_server_last_save_in_second_pass_of_repeated_hour_is_plausible(rr, tmp_path):
    # lastSaveDay = local 02:30:00 Oct 25 / 60: local-as-UTC 1792895400. Saved at 02:30 CET (second
    # pass) = 01:30Z = 1792891800; mtime 01:30:05Z = 1792891805. Slot 150 (02:30) used.
    samples = run_server(rr, tmp_path, 1792891805, dayMax=1440, last_save_local=1792895400,
                         last_save_divisor="slot", day={"150": SERVER_VALUES})
    assert implausible(samples, "server_stats") == 0
    assert value(samples, "royalrender_server_stats_last_save_timestamp_seconds") == 1792891800
    assert value(samples, "royalrender_server_stats_slot_timestamp_seconds") == 1792891800


def test_daily_slot_in_second_pass_of_repeated_hour_is_not_withheld(rr, tmp_path):
    # 96 slots; slot 10 = 02:30 wall. File written 02:40 CET (second pass) = 01:40Z = 1792892400:
    # the slot began 10 min before the write (02:30 CET = 01:30Z = 1792891800), well inside 4 slots
    # (3600 s), so the name is current.
    samples = run_daily(rr, tmp_path, 1792892400, 96, users=[one_slot("anna", 10)], projects=[],
                        render_apps=[])
    assert slot_time(samples, "user", "anna") == 1792891800
    assert stale(samples, "daily_stats") == 0


def test_lord_howe_half_hour_fallback_client_second_pass(rr, tmp_path):
    # 30-minute DST: Sun 2026-04-05 (day 20548) 01:30-02:00 shown twice. Item 210 (30 s) = 6300 s
    # = 01:45:00 wall. Written 01:45:10 +10:30 (second pass) = 15:15:10Z Apr 4 = 1775315710;
    # the item started at 15:15:00Z = 1775315700.
    days = {"179": {"day": 20548, "daySet": 1, "data": {"210": client_item(0.25)}}}
    path = rr.write_client("render01", 1775315710, dataMax=2880, daysMax=180, days=days)
    samples = run_once(rr.config(tmp_path, timezone="Australia/Lord_Howe"))
    assert up(samples, "client_stats", path) == 1
    assert implausible(samples, "client_stats") == 0
    assert value(samples, "royalrender_client_stats_timestamp_seconds", client="render01") == 1775315700


# -- 2. numbering: one stray type value decides for everybody ---------------------------------------


def add_entry(path, dimension, entry):
    """One more entry in a daily file of the fake, its modification time kept."""
    with open(path) as handle:
        data = json.load(handle)
    data[dimension].append(entry)
    mtime = os.stat(path).st_mtime
    with open(path, "w") as handle:
        json.dump(data, handle)
    os.utime(path, (mtime, mtime))


def test_one_stray_type_0_does_not_move_rr9_users_to_projects(rr9_timeline, tmp_path):
    # An RR 9 module (ids 1..3, entries typed 1..3, RR 9's timeline class, id 3 answers): ids 1..3
    # is decided (contract step 3). One project entry carries a garbage type 0 (facts: "assume it
    # may ... return garbage"). Under the decided numbering 1..3, anna (listed under id 1 and
    # typed 1) is a user, tahoe (id 2, typed 2) a project, arnold (id 3, typed 3) a render app.
    # The junk entry's type names no dimension in 1..3, so it goes by its list (project).
    path = write_plain_day(rr9_timeline, 1, 1)
    add_entry(path, "projects", {"name": "junk", "type": 0, "slots": {"56": {"slotSet": 1}}})
    samples = run_once(rr9_timeline.config(tmp_path))
    assert module_info(samples)["daily_stats_type_ids"] == "1..3"
    names = dimension_names(samples)
    assert "anna" in names["user"], names
    assert "tahoe" in names["project"], names
    assert "arnold" in names["render_app"], names


def test_rr8_module_with_one_garbage_type_3_still_reads_its_users(rr, tmp_path):
    # An RR 8 module (ids 0..2, entries typed 0..2; getJobsByType(3) raises IndexError, as the RR 8
    # reference documents only 0..2). One render-app entry carries a garbage type 3. The module
    # itself refutes RR 9's numbering (id 3 is refused, id 0 answers with users), and the RR 8
    # reference says users are id 0: anna must still be exported as a user.
    path = write_plain_day(rr, 0, 0)
    add_entry(path, "render_apps", {"name": "junk", "type": 3, "slots": {"56": {"slotSet": 1}}})
    samples = run_once(rr.config(tmp_path))
    names = dimension_names(samples)
    assert "anna" in names["user"], (names, module_info(samples))
    assert module_info(samples)["daily_stats_type_ids"] == "0..2"


# -- 3. server stale window with the reference's "divided by 90" reading -----------------------------


def test_server_slot_starting_more_than_4_slots_before_the_last_save_is_withheld(rr, tmp_path):
    # dayMax 1440 (60 s slots), lastSaveDay = local / 90 (the reference's text). Last save Fri
    # 2026-11-20 12:01:30 CET: local-as-UTC 20777*86400 + 43290 = 1795176090 = 90 * 19946401, Unix
    # 11:01:30Z = 1795172490; mtime 1795172500. Only slot 717 (11:57:00 wall) is used: it starts
    # 4 min 30 s = 4.5 slot lengths before the last save. Contract: "a slot that starts more than
    # 4 slot lengths before the last save ... is not [exported]" and the read is counted as stale.
    samples = run_server(rr, tmp_path, 1795172500, dayMax=1440, last_save_local=1795176090,
                         last_save_divisor=90, day={"717": SERVER_VALUES})
    assert value(samples, "royalrender_server_stats_last_save_timestamp_seconds") == 1795172490
    assert value(samples, "royalrender_server_stats_slot_timestamp_seconds") is None
    assert stale(samples, "server_stats") == 1


# -- 4. the machine's zone given as a POSIX TZ string ------------------------------------------------


def test_timezone_unset_tz_posix_rule_string_is_said_and_flagged(rr, tmp_path):
    # royalrender.timezone unset: the contract converts in "the machine's zone: $TZ, else
    # /etc/localtime". TZ="CET-1CEST,M3.5.0,M10.5.0/3" is a valid POSIX TZ value (glibc: `TZ=...
    # date -d @1795181400` prints 14:30 CET), i.e. the machine runs Berlin time. RR saved at 14:30
    # CET Nov 20 = 13:30Z = 1795181400 (SAVED_UNIX); the file's mtime is that save.
    rr.write_server(SAVED_UNIX, dayMax=1440, last_save_local=SAVED_LOCAL, last_save_divisor="slot",
                    day={"870": SERVER_VALUES})
    env = dict(os.environ, TZ="CET-1CEST,M3.5.0,M10.5.0/3")
    env.pop("RR_ROOT", None)
    result = subprocess.run([sys.executable, "-m", "exporter", "--config.file", rr.config(tmp_path, timezone=None),
                             "--once"], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    samples = parse_samples(result.stdout)
    # zoneinfo cannot load a POSIX rule: docs/royalrender.md says RR's times are then read as UTC, with a
    # warning naming the fix, and the hour's difference is flagged, never silent
    assert "RR's local times are read as UTC: set royalrender.timezone" in result.stderr
    assert value(samples, "royalrender_server_stats_last_save_timestamp_seconds") == SAVED_UNIX + 3600
    assert implausible(samples, "server_stats") == 1


def run_backfill(config_path, tmp_path):
    """``backfill`` of the RR source in UTC: (the finished process, the path of the history it wrote)."""
    out = os.path.join(str(tmp_path), "history.om")
    env = dict(os.environ, TZ="UTC")
    env.pop("RR_ROOT", None)
    return subprocess.run([sys.executable, "-m", "exporter", "backfill", "--config.file", config_path, "--output", out,
                           "--sources", "royalrender"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=env), out


def backfilled_jobs(config_path, tmp_path):
    """[value, timestamp] of every ``royalrender_jobs`` sample a successful backfill wrote."""
    result, out = run_backfill(config_path, tmp_path)
    assert result.returncode == 0, result.stderr
    with open(out) as handle:
        return sorted(line.split()[1:] for line in handle if line.startswith("royalrender_jobs "))


def run_probe(config_path):
    env = dict(os.environ, TZ="UTC")
    env.pop("RR_ROOT", None)
    return subprocess.run([sys.executable, "-m", "exporter", "rr-probe", "--config.file", config_path], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=env)


def test_probe_on_a_correct_farm_during_the_second_pass_reports_no_problem(rr, tmp_path):
    # Same file as test_server_last_save_in_second_pass_of_repeated_hour_is_plausible: the zone is
    # right and RR's clock is right. docs/royalrender.md: exit 0 "everything the configuration needs
    # works"; a royalrender.timezone problem listed here sends the operator after a non-problem.
    rr.write_server(1792891805, dayMax=1440, last_save_local=1792895400, last_save_divisor="slot",
                    day={"150": SERVER_VALUES})
    result = run_probe(rr.config(tmp_path))
    assert "IMPLAUSIBLE" not in result.stdout, result.stdout[-2000:]


# -- 5. backfill: the repeated hour's slots hold the SECOND pass ---------------------------------------


def test_backfill_server_slot_of_the_repeated_hour_is_stamped_at_its_last_write(rr, tmp_path):
    # Reference, _rrGlobalStatsLS.day(idx): "The stats are constantly overwritten with the
    # information right now", one index per wall-clock minute. On Sun 2026-10-25 index 150 (02:30
    # wall) is written at 02:30 CEST (00:30Z) and OVERWRITTEN at 02:30 CET (01:30Z). Last save
    # 04:00 CET = 03:00Z = 1792897200 (local-as-UTC 1792900800, lastSaveDay = 29881680); mtime
    # +10 s. So the value index 150 holds is the 01:30Z one: its sample belongs at 1792891800,
    # and nothing holds 00:30Z's values any more.
    rr.write_server(1792897210, dayMax=1440, last_save_local=1792900800, last_save_divisor="slot",
                    day={"150": dict(SERVER_VALUES, jobs_total=150), "240": dict(SERVER_VALUES, jobs_total=240)})
    jobs = backfilled_jobs(rr.config(tmp_path), tmp_path)
    assert ["150.0", "1792891800.0"] in jobs, jobs
    assert ["240.0", "1792897200.0"] in jobs, jobs


# -- 6. absurd times: member failures, and no traceback ---------------------------------------------


def test_negative_last_save_day_is_a_member_failure(rr, tmp_path):
    # docs/royalrender.md, Absurd values: "a local time outside 1970..2100 is a member failure: that
    # value is dropped, the file stays up" (counted in ..._member_failures_total{kind,member}).
    # lastSaveDay = -100 (local -6000 s, 1969).
    samples = run_server(rr, tmp_path, 1795181420, dayMax=1440, last_save_local=-6000, last_save_divisor="slot",
                         day={"1339": SERVER_VALUES})
    assert value(samples, "royalrender_server_stats_last_save_timestamp_seconds") is None
    assert value(samples, "renderfarm_exporter_royalrender_member_failures_total", kind="royalrender_server_stats",
                 member="_rrGlobalStatsLS.lastSaveDay") == 1


def test_client_day_number_past_2100_is_a_member_failure(rr, tmp_path):
    # day 99999 = year 2243: a local time outside 1970..2100 -> member failure of _rrClientStats_day.day
    days = {"179": {"day": 99999, "daySet": 1, "data": {"300": client_item(0.5)}}}
    samples = run_client(rr, tmp_path, 1795180220, dataMax=2880, daysMax=180, days=days)
    assert value(samples, "royalrender_client_cpu_ratio", client="render01") is None
    assert value(samples, "renderfarm_exporter_royalrender_member_failures_total", kind="royalrender_client_stats",
                 member="_rrClientStats_day.day") == 1


def _tmpfs_rr(tmp_path):
    # ext4 clamps mtimes to 2446; tmpfs (and xfs bigtime, btrfs, many NFS servers) keep 2**40 (year 36812)
    assert os.path.isdir("/dev/shm"), "the test needs a tmpfs at /dev/shm (Debian has one)"
    folder = tempfile.mkdtemp(dir="/dev/shm", prefix="attack23-")
    probe = os.path.join(folder, "probe")
    open(probe, "w").close()
    os.utime(probe, (2 ** 40, 2 ** 40))
    assert os.stat(probe).st_mtime == 2 ** 40, "this tmpfs clamps modification times"
    return RRFolder(os.path.join(folder, "rr"))


def test_daily_file_with_mtime_beyond_year_9999_does_not_fail_the_reader(tmp_path):
    # A daily file whose mtime is 2**40 (a broken clock / NFS server): docs/royalrender.md says a
    # file's failure is that file's (source_up 0, read failure counted), never a traceback; the
    # reader must not fail as a whole ("reader failed; keeping its last good values").
    farm = _tmpfs_rr(tmp_path)
    try:
        path = write_plain_day(farm, 0, 0)
        os.utime(path, (2 ** 40, 2 ** 40))
        env = dict(os.environ, TZ="UTC")
        env.pop("RR_ROOT", None)
        result = subprocess.run([sys.executable, "-m", "exporter", "--config.file", farm.config(tmp_path), "--once"],
                                cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
        assert "Traceback" not in result.stderr, result.stderr[-1500:]
        samples = parse_samples(result.stdout)
        assert value(samples, "renderfarm_exporter_reader_failures_total", kind="royalrender_daily_stats") in (None, 0)
    finally:
        shutil.rmtree(os.path.dirname(farm.root), ignore_errors=True)


def test_probe_with_a_file_mtime_beyond_year_9999_reports_it_instead_of_crashing(tmp_path):
    # docs/royalrender.md: exit 1 means "the module did not import or the worker did not start";
    # a file problem is exit 3 with the problem listed.
    farm = _tmpfs_rr(tmp_path)
    try:
        farm.write_server(2 ** 40, dayMax=1440, last_save_local=SAVED_LOCAL, last_save_divisor="slot",
                        day={"870": SERVER_VALUES})
        result = run_probe(farm.config(tmp_path))
        assert "Traceback" not in result.stderr, result.stderr[-1500:]
        assert result.returncode == 3, result.returncode
    finally:
        shutil.rmtree(os.path.dirname(farm.root), ignore_errors=True)


# -- 7. the spring gap: indexes that were never "now" today hold YESTERDAY's stats -----------------------


def test_server_walk_back_across_the_spring_gap_does_not_export_yesterdays_slot_as_current(rr, tmp_path):
    # Reference, _rrGlobalStatsLS.day(idx): "The stats are constantly overwritten with the information
    # right now, therefore an index larger than the current time returns stats of yesterday." On Sun
    # 2026-03-29 the wall clock jumps 02:00 CET -> 03:00 CEST, so indexes 120..179 (02:00-02:59) are
    # never "right now" that day: index 179 still holds Sat 02:59 CET = 01:59Z Mar 28 (1774663140).
    # Last save 03:01:00 CEST = 01:01Z = 1774746060 (local-as-UTC 1774753260, lastSaveDay 29579221),
    # mtime +10 s. Slots 181 and 180 unused, 179 used: its data started 23 h before the last save,
    # far more than 4 slot lengths -> not exported, read counted as stale. (The exporter stamps it
    # 02:59 "Mar 29" -> 01:59Z Mar 29, 58 min AFTER the last save.)
    samples = run_server(rr, tmp_path, 1774746070, dayMax=1440, last_save_local=1774753260,
                         last_save_divisor="slot", day={"179": SERVER_VALUES})
    assert value(samples, "royalrender_server_stats_last_save_timestamp_seconds") == 1774746060
    assert value(samples, "royalrender_server_stats_slot_timestamp_seconds") is None
    assert stale(samples, "server_stats") == 1


# -- 8. backfill: the month array is PUSHED every 30 minutes, not indexed by the wall clock --------------


def test_backfill_month_array_across_the_autumn_switch_counts_real_half_hours(rr, tmp_path):
    # Reference, month(idx): "The server adds the stats of the last 30 minutes to the last index
    # (monthMax()-1) of the array and pushes all other stat items down"; "if the current time is
    # 18:15, then the last stats are from 17:30 - 18:00". Index monthMax()-1-k therefore holds the
    # 30 minutes that ended k pushes (k x 30 real minutes) before the last one. Assumption stated:
    # RR pushes every 30 minutes of real time (the reference names no other clock for pushes).
    # Last save Sun 2026-10-25 12:10 CET = 11:10Z (local-as-UTC 1792930200; lastSaveMonth*1800 =
    # 12:00 wall): index 1439 = 11:30 CET = 10:30Z = 1792924200. Index 1415 (k = 24, 12 real hours
    # earlier) = 22:30Z Oct 24 = 1792881000 (00:30 CEST Oct 25). Wall-clock arithmetic (11:30 - 12 h
    # = 23:30 CEST Oct 24 = 21:30Z) misses the repeated hour.
    rr.write_server(1792926610, dayMax=1440, last_save_local=1792930200, last_save_divisor="slot", day={},
                    month={"1439": dict(SERVER_VALUES, jobs_total=1439), "1415": dict(SERVER_VALUES, jobs_total=1415)})
    jobs = backfilled_jobs(rr.config(tmp_path), tmp_path)
    assert ["1439.0", "1792924200.0"] in jobs, jobs
    assert ["1415.0", "1792881000.0"] in jobs, jobs


# -- 9. the daemon: one daily file with an absurd mtime freezes the whole daily section -------------------


def test_daemon_daily_section_keeps_updating_after_a_file_with_mtime_past_9999(tmp_path, start_daemon):
    # docs/royalrender.md: a read that fails "fails that file only: it keeps its last good values, is
    # marked down (renderfarm_exporter_source_up 0)". A daily file b.stats with mtime 2**40 (tmpfs,
    # broken NFS clock) appears; it is the newest file, so it is the one read -- it must be marked
    # up or down as a file, not fail the whole reader with a traceback on every sync.
    farm = _tmpfs_rr(tmp_path)
    try:
        now = time.time()
        farm.write_daily(now - 60, name="a.stats", id_base=0, type_base=0, slots=96,
                       users=[{"name": "anna", "slots": {str(i): {"slotSet": 1} for i in range(96)}}],
                       projects=[], render_apps=[])
        daemon = start_daemon("--config.file", farm.config(tmp_path, timezone="UTC"), env=exporter_env())
        bad = farm.write_daily(2 ** 40, name="b.stats", id_base=0, type_base=0, slots=96,
                             users=[{"name": "bert", "slots": {"5": {"slotSet": 1}}}], projects=[], render_apps=[])

        def judged():
            return up(daemon.samples(), "daily_stats", bad) is not None
        try:
            wait_until(judged, 15, "a source_up series for the file with mtime 2**40")
        finally:
            log = daemon.log()
        assert "Traceback" not in log, log[-1500:]
    finally:
        shutil.rmtree(os.path.dirname(farm.root), ignore_errors=True)


def test_backfill_skips_a_daily_file_with_mtime_past_9999_and_writes_the_rest(tmp_path):
    # docs/backfill.md: "An unreadable input is skipped and listed (exit code 1), unless --strict".
    # The good daily file (anna, slot 56 of Fri 2026-11-20 = 13:00Z = 1795179600) must still be
    # written; the file with mtime 2**40 is skipped and listed -- no traceback, no lost output.
    farm = _tmpfs_rr(tmp_path)
    try:
        write_plain_day(farm, 0, 0)
        farm.write_daily(2 ** 40, name="b.stats", id_base=0, type_base=0, slots=96,
                       users=[{"name": "bert", "slots": {"5": {"slotSet": 1}}}], projects=[], render_apps=[])
        result, out = run_backfill(farm.config(tmp_path), tmp_path)
        assert "Traceback" not in result.stderr, result.stderr[-1500:]
        assert result.returncode == 1, result.stderr
        with open(out) as handle:
            anna = [line for line in handle if line.startswith("royalrender_user_jobs{") and 'user="anna"' in line]
        # every set slot of anna's is history: 55 and 56
        assert {line.split()[-1] for line in anna} == {"%.1f" % PLAIN_SLOT[55], "%.1f" % PLAIN_SLOT[56]}, anna
    finally:
        shutil.rmtree(os.path.dirname(farm.root), ignore_errors=True)
