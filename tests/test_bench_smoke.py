"""The benchmark's smoke run: every figure is measured end to end, so bench/ cannot rot.

Targets are not asserted here (timings on shared machines are noise); the
ingest, cold start and steady state figures do assert that mtail and the
exporter report the totals the files hold (the bench exits otherwise).
"""

import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.ecosystem

FIGURES = ("cpu.acct ingest", "physical limit: wc -l", "scrape text", "scrape gzip", "footprint",
           "RR re-read", "freshness, events", "freshness, poll 2 s", "incremental",
           "steady state, 20 hosts x 1 line/s", "steady state, 40 hosts x 0.5 line/s", "realistic farm, 60 hosts",
           "gzip body vs text, 3-host farm", "gzip body vs text, 60-host farm", "gzip body vs text, demo farm",
           "floor of the steady state",
           "many folders",
           "inotify queue overflow", "cold start", "restart with checkpoint", "churn", "isolation",
           "5 slow readers (1 byte / 20 s)", "3 clients handshaking TLS over and over",
           "RR 30 client files, 10 rewritten/s, beside Rush 10 hosts x 1 line/s, 3 s",
           "RR 30 client files, 10 rewritten/s, beside Rush 10 hosts x 1 line/s: a changed client",
           "RR 30 client files, 10 rewritten/s, beside Rush 10 hosts x 1 line/s: Rush freshness",
           "RR 30 client files, 10 rewritten/s, beside Rush 10 hosts x 1 line/s: start until the first RR series")


def test_bench_smoke_run_measures_every_figure():
    result = subprocess.run([sys.executable, "-m", "bench", "--smoke"], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and not line.startswith("| figure")]
    assert [any(row.startswith("| " + figure) for row in rows) for figure in FIGURES] == [True] * len(FIGURES)
    assert "(identical totals checked)" in result.stdout
    assert "both totals checked" in result.stdout
