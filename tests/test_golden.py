"""The demo farm's exposition, in both formats, against the golden files in tests/golden/.

A change to a metric's name, labels, help, type or values shows up as a reviewable diff. After an intended
change: ``pytest tests/test_golden.py --update-golden`` rewrites the files; commit them with the change.
"""

from __future__ import annotations

import difflib
import itertools
import os
import platform
import sys
import time

import pytest
from conftest import REPO

from exporter import core
from exporter.simulation.demo import create_farm

pytestmark = pytest.mark.inprocess

GOLDEN = os.path.join(REPO, "tests", "golden")
SEED = 27
#: 2026-01-01 13:00 UTC, in the past, so no record is ahead of the clock; it advances a second per reading, so
#: the files the simulator writes one after another have distinct, fixed modification times.
START = 1767272400
#: Families whose samples differ between runs or machines: the process and the interpreter, the exporter's and
#: Python's versions, times of now and durations. Their HELP and TYPE lines stay in the golden files.
UNSTABLE = (
    "process_", "python_", "renderfarm_exporter_build_info", "renderfarm_exporter_exposition_render_seconds",
    "renderfarm_exporter_source_last_check_timestamp_seconds",
    "renderfarm_exporter_source_last_success_timestamp_seconds",
)


def stable(text: str, folder: str) -> str:
    """The exposition without the samples of the UNSTABLE families, and with this machine's paths named."""
    for found, placeholder in (("%s (%s)" % (platform.python_version(), sys.executable), "<python>"),
                               (folder, "<farm>"), (REPO, "<repo>")):
        text = text.replace(found, placeholder)
    return "".join(line for line in text.splitlines(keepends=True)
                   if line.startswith("#") or not line.startswith(UNSTABLE))


@pytest.fixture(scope="module")
def demo_farm_rendered(tmp_path_factory):
    """The demo farm of a fixed seed and clock, read once as ``--once`` reads it, in the UTC zone."""
    zone = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"  # Royal Render's files hold local times; the worker process inherits the zone
    time.tzset()
    try:
        folder = str(tmp_path_factory.mktemp("demo"))
        ticks = itertools.count(START)
        _, _, config = create_farm(folder, seed=SEED, clock=lambda: next(ticks))
        for directory, _, names in os.walk(os.path.join(folder, "rush")):
            for name in names:  # the Rush logs were appended to now; their records are dated by the clock
                os.utime(os.path.join(directory, name), (START, START))
        return {name: stable(core.render_once(config, openmetrics=name.endswith("openmetrics")).decode(), folder)
                for name in ("demo.prom", "demo.openmetrics")}
    finally:
        if zone is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = zone
        time.tzset()


@pytest.mark.parametrize("name", ["demo.prom", "demo.openmetrics"])
def test_the_demo_farms_exposition_is_the_golden_one(demo_farm_rendered, name, request):
    path = os.path.join(GOLDEN, name)
    rendered = demo_farm_rendered[name]
    if request.config.getoption("--update-golden"):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(rendered)
    with open(path, encoding="utf-8") as handle:
        golden = handle.read()
    diff = "".join(difflib.unified_diff(golden.splitlines(keepends=True), rendered.splitlines(keepends=True),
                                        "tests/golden/" + name, "rendered now"))
    assert not diff, "the exposition changed; if on purpose, run pytest --update-golden and commit:\n" + diff
