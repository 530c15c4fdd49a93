"""RR's local times as Unix time on the daemon's side: DST by one rule, the day and the time base from the file's
modification time, stale slots withheld and implausible times flagged. Expected UTC times are written out."""

import calendar
from zoneinfo import ZoneInfo

import pytest

from exporter.royalrender import client_stats, daily_stats, server_stats
from exporter.royalrender.times import Written

pytestmark = pytest.mark.inprocess

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*wall):
    return float(calendar.timegm(wall + (0,) * (6 - len(wall))))


def local(*wall):
    """RR's local seconds of a wall-clock time: the same arithmetic as UTC, without a zone."""
    return utc(*wall)


@pytest.mark.parametrize("wall, expected", [
    ((2026, 3, 29, 1, 45), utc(2026, 3, 29, 0, 45)),   # winter time, UTC+1
    ((2026, 3, 29, 2, 30), utc(2026, 3, 29, 1, 30)),   # skipped: the offset before the switch
    ((2026, 3, 29, 3, 0), utc(2026, 3, 29, 1, 0)),     # summer time, UTC+2
    ((2026, 10, 25, 1, 59), utc(2026, 10, 24, 23, 59)),
    ((2026, 10, 25, 2, 30), utc(2026, 10, 25, 0, 30)),  # twice: the first (summer) occurrence
    ((2026, 10, 25, 3, 0), utc(2026, 10, 25, 2, 0)),   # winter time again
])
def test_each_wall_clock_time_converts_by_one_rule(wall, expected):
    written = Written(0.0, BERLIN)
    assert written.unix(local(*wall)) == expected


def test_a_conversion_does_not_depend_on_the_one_before():
    written = Written(0.0, BERLIN)
    ambiguous = local(2026, 10, 25, 2, 30)
    for before in (local(2026, 7, 1, 12), local(2026, 1, 1, 12), local(2026, 10, 25, 3, 30)):
        written.unix(before)
        assert written.unix(ambiguous) == utc(2026, 10, 25, 0, 30)


def daily_reply(slots, entries):
    """A worker reply for daily stats: one user with set slots at ``entries`` indexes (newest first)."""
    named = {"slots": slots, "set": [{"index": i, "jobs_rendering": i} for i in entries]}
    return {"shape": {"type_ids": "1..3", "evidence": "test"}, "user": {"anna": named}, "project": {},
            "render_app": {}}


def test_daily_slots_on_the_october_switch_of_96_slots():
    """The repeated hour is its second pass once the file was written after it: RR overwrote those slots."""
    mtime = utc(2026, 10, 25, 2, 20)  # 03:20 winter time, in slot 13 (03:15-03:30)
    data = daily_stats.interpret_history(daily_reply(96, [13, 12, 10, 8, 7]), Written(mtime, BERLIN))
    times = [row["time"] for row in data["user"]["anna"]]
    assert times == [utc(2026, 10, 25, 2, 15), utc(2026, 10, 25, 2, 0), utc(2026, 10, 25, 1, 30),
                     utc(2026, 10, 25, 1, 0), utc(2026, 10, 24, 23, 45)]


def test_the_repeated_hour_is_its_first_pass_while_the_file_is_written_in_it():
    mtime = utc(2026, 10, 25, 0, 40)  # 02:40 summer time, the first pass
    data = daily_stats.interpret(daily_reply(96, [10]), Written(mtime, BERLIN))  # 02:30
    assert data["user"]["anna"]["time"] == utc(2026, 10, 25, 0, 30)
    later = Written(utc(2026, 10, 25, 1, 40), BERLIN)  # 02:40 winter time, the second pass
    assert daily_stats.interpret(daily_reply(96, [10]), later)["user"]["anna"]["time"] == utc(2026, 10, 25, 1, 30)


def test_daily_slots_of_288_a_day_on_the_march_switch():
    mtime = utc(2026, 3, 29, 10, 2)  # 12:02 summer time
    data = daily_stats.interpret(daily_reply(288, [144]), Written(mtime, BERLIN))  # 144 x 300 s = 12:00
    assert data["user"]["anna"]["time"] == utc(2026, 3, 29, 10, 0)
    assert data["check"] == {"offset": -120.0, "implausible": None, "stale": False}


def test_a_daily_file_finished_after_midnight_describes_the_day_before():
    mtime = utc(2026, 11, 20, 23, 1)  # 00:01 on the 21st in Berlin; the last slot of the 20th just written
    data = daily_stats.interpret(daily_reply(96, [95]), Written(mtime, BERLIN))
    assert data["user"]["anna"]["time"] == utc(2026, 11, 20, 22, 45)


def test_a_name_idle_for_more_than_four_slots_is_withheld():
    mtime = utc(2026, 11, 20, 11, 0)  # 12:00 in Berlin
    data = daily_stats.interpret(daily_reply(96, [43]), Written(mtime, BERLIN))  # 10:45: 75 min before
    assert data["user"] == {} and data["check"]["stale"] is True
    data = daily_stats.interpret(daily_reply(96, [44]), Written(mtime, BERLIN))  # 11:00: 4 slots before
    assert data["user"]["anna"]["jobs_rendering"] == 44 and data["check"]["stale"] is False


def walk(step, used, older=None):
    """One reading of lastSaveDay as the worker reports it: used slots within reach (back, values), else how far
    back the newest used one is."""
    return {"step": step, "used": [{"back": back, "slot": values} for back, values in used], "older": older}


def server_reply(last_save, walks, slots=1440):
    return {"slot_seconds": 86400.0 / slots, "last_save": last_save, "sizes": {"dayMax": slots},
            "walks": walks}


def test_the_last_save_step_is_the_one_nearest_the_write():
    saved = local(2026, 11, 20, 14, 30)
    mtime = utc(2026, 11, 20, 13, 30, 40)
    walks = [walk(60.0, [(0, {"index": 1, "clients_free": 1})]), walk(90.0, [(0, {"index": 870, "clients_free": 9})])]
    data = server_stats.interpret(server_reply(int(saved // 90), walks), Written(mtime, BERLIN))
    assert data["last_save_step"] == 90.0
    assert data["last_save_time"] == utc(2026, 11, 20, 13, 30)
    assert data["slot"]["clients_free"] == 9 and data["slot"]["time"] == utc(2026, 11, 20, 13, 30)
    assert data["check"]["implausible"] is None


def test_yesterdays_slot_is_not_exported_as_current():
    saved = local(2026, 11, 20, 0, 5)
    mtime = utc(2026, 11, 19, 23, 5, 10)
    walks = [walk(60.0, [(6, {"index": 1439, "clients_free": 3})]), walk(90.0, [], older=None)]
    data = server_stats.interpret(server_reply(int(saved // 60), walks), Written(mtime, BERLIN))
    assert data["slot"] is None and data["check"]["stale"] is True
    assert data["last_save_time"] == utc(2026, 11, 19, 23, 5)


def test_an_unset_zone_puts_the_last_save_an_hour_ahead_and_says_why():
    saved = local(2026, 11, 20, 14, 30)  # Berlin wall clock, read as UTC
    mtime = utc(2026, 11, 20, 13, 30, 5)
    walks = [walk(60.0, [(0, {"index": 870})]), walk(90.0, [], older=None)]
    data = server_stats.interpret(server_reply(int(saved // 60), walks), Written(mtime, ZoneInfo("UTC")))
    assert data["check"]["offset"] == 3595.0
    assert data["check"]["implausible"] == (
        "the last save (lastSaveDay) is 1.0 h after the file was written: a whole number of hours, so RR's time "
        "zone is probably not royalrender.timezone")


def test_a_client_item_an_hour_behind_is_implausible_and_not_current():
    mtime = utc(2026, 11, 20, 12, 0)
    reply = {"item": {"local_time": local(2026, 11, 20, 11, 0), "item_seconds": 30.0, "cpu": 0.5}}
    data = client_stats.interpret(reply, Written(mtime, ZoneInfo("UTC")))
    assert data["item"] is None and data["check"]["stale"] is True and data["check"]["offset"] == -3600.0
    assert "before the file was written" in data["check"]["implausible"]
