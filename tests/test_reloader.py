"""The reloader in-process, on the wired parts (``core.Parts``) and a real config file in tmp_path.

The subprocess tests in test_reload.py check the same through SIGHUP and
HTTP; these call ``reload()`` directly and look at the parts it changed.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from conftest import parse_samples, value, wait_until

from exporter.config import load
from exporter.core import Parts, build_readers
from exporter.daemon import Reloader
from exporter.web import statuspage
from exporter.web.webconfig import WebConfigFile

pytestmark = pytest.mark.inprocess

LINE = "p 948300000 tahoe-1 T anna %d render01 100 30 1 2 0 77\n"


@pytest.fixture
def farm(tmp_path):
    """A running exporter over one Rush file, and its reloader."""
    acct = tmp_path / "cpu.acct"
    acct.write_text(LINE % 1)
    config_path = tmp_path / "config.yml"
    config_path.write_text("rush:\n  cpu_acct: ['%s']\n" % acct)
    config = load(str(config_path))
    parts = Parts(build_readers(config), config.watch)
    reloader = Reloader(str(config_path), config, parts.pipeline, parts.board, WebConfigFile(None))
    parts.start()
    assert parts.renderer.wait_ready(20)
    yield parts, reloader, config_path
    parts.stop()


def served(parts: Parts):
    return parse_samples(parts.renderer.exposition_for_scrape().text.decode())


def frames(parts: Parts):
    return value(served(parts), "rush_frames_total", host="render01", status="done")


def test_an_invalid_config_changes_nothing_and_is_reported(farm):
    parts, reloader, config_path = farm
    running = parts.pipeline.readers()
    loaded_at = parts.status().reload.last_success_time
    config_path.write_text("rush:\n  cpu_acct: 5\n")

    problem = reloader.reload().problem

    assert problem is not None and "rush.cpu_acct" in problem
    assert parts.pipeline.readers() == running
    reload = parts.status().reload
    assert (reload.successful, reload.successes, reload.failures) == (False, 0, 1)
    assert reload.last_success_time == loaded_at and reload.last_attempt_time is not None
    wait_until(lambda: value(served(parts), "renderfarm_exporter_config_last_reload_successful") == 0, 5,
               "the exporter section to show the failed reload")
    assert frames(parts) == 1


def test_a_changed_source_gets_new_readers_and_a_watch_only_change_keeps_them(farm, tmp_path):
    parts, reloader, config_path = farm
    assert frames(parts) == 1
    other = tmp_path / "other.acct"
    other.write_text(LINE % 2 + LINE % 3)
    config_path.write_text("rush:\n  cpu_acct: ['%s']\n" % other)
    before = parts.pipeline.readers()

    assert reloader.reload().problem is None

    after = parts.pipeline.readers()
    assert after["rush"] and not set(map(id, after["rush"])) & set(map(id, before["rush"]))
    wait_until(lambda: frames(parts) == 2, 10, "the new file's frames")

    config_path.write_text("rush:\n  cpu_acct: ['%s']\nwatch:\n  debounce: 50ms\n" % other)
    assert reloader.reload().problem is None
    assert parts.pipeline.readers() == after, "a watch-only change keeps the readers, their offsets and counters"
    with open(other, "a") as handle:
        handle.write(LINE % 4)
    wait_until(lambda: frames(parts) == 3, 10, "the appended frame, counted once")
    status = parts.status()
    assert (status.reload.successful, status.reload.successes, status.reload.failures) == (True, 2, 0)
    wait_until(lambda: value(served(parts), "renderfarm_exporter_config_reloads_total", result="success") == 2, 5,
               "the exporter section to count both reloads")


def test_a_reload_stuck_past_its_deadline_is_abandoned_and_the_next_one_runs(farm, tmp_path):
    parts, reloader, config_path = farm
    reloader.deadline = 0.5
    hang, entered = threading.Event(), threading.Event()
    refresh = reloader.web.refresh
    calls = []

    def stuck_once():
        calls.append(1)
        if len(calls) == 1:
            entered.set()
            hang.wait()
        refresh()

    reloader.web.refresh = stuck_once
    other = tmp_path / "other.acct"
    other.write_text(LINE % 2 + LINE % 3)
    config_path.write_text("rush:\n  cpu_acct: ['%s']\n" % other)
    started = time.monotonic()

    problem = reloader.reload().problem

    assert time.monotonic() - started < 2.0 and entered.is_set()
    assert problem == ("configuration reload abandoned: not finished within 0.5 s, still re-reading the web "
                       "config file")
    reload = parts.status().reload
    assert (reload.successful, reload.failures, reload.last_error) == (False, 1, problem)
    assert re.fullmatch(r"configuration reload running for \d s, still re-reading the web config file", reload.stuck)
    wait_until(lambda: (reloader.health() or "").startswith("configuration reload running for"), 5,
               "health to name the stuck reload")
    page = statuspage.render(parts.status(), parts.renderer.sections(), "/metrics", True).decode()
    assert "FAILED (the previous configuration is still in use): %s at " % problem in page
    assert "<td class='down'>STUCK</td><td></td><td></td><td>a reload is stuck past its deadline: configuration " \
           "reload running for" in page
    assert frames(parts) == 1

    assert reloader.reload().problem is None, "the next reload runs beside the stuck one"
    wait_until(lambda: frames(parts) == 2, 10, "the new file's frames")
    applied = parts.pipeline.readers()

    config_path.write_text("rush:\n  cpu_acct: ['%s']\n" % (tmp_path / "cpu.acct"))  # what the stuck one reads
    hang.set()
    wait_until(lambda: parts.status().reload.stuck == "" and reloader.health() is None, 5, "the stuck one to end")
    assert parts.pipeline.readers() == applied, "an abandoned reload never applies its configuration"
    reload = parts.status().reload
    assert (reload.successful, reload.successes, reload.failures) == (True, 1, 1)
