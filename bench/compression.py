"""How much smaller the gzip body is than the text, on a small farm, the demo farm and about 30,000 series.

Scrapers ask for gzip; a body made of many small families is where per-piece
compression lost most (1.6x on 3 hosts, where one stream gives 4x). Each row
fetches both bodies of one exposition (OpenMetrics, as Prometheus asks) and
checks that the gzip body is that text.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from typing import List, Tuple

from bench.common import REPO, Row, fetch, free_port, series_count, start_exporter, stop, wait_http, write_text
from bench.data import write_cpu_acct

TARGET = 3.5


def _ratio(url: str) -> Tuple[float, int]:
    """(text size / gzip size, series) of one exposition, retried until both bodies are of the same one."""
    for _ in range(50):
        text = fetch(url + "/metrics", openmetrics=True)
        body = fetch(url + "/metrics", gzip=True, openmetrics=True)
        if gzip.decompress(body) == text:
            return len(text) / len(body), series_count(text)
        time.sleep(0.1)
    raise SystemExit("the exposition kept changing between two fetches")


def _row(what: str, ratio: float, series: int) -> Row:
    return Row("gzip body vs text, %s (%d series, OpenMetrics)" % (what, series), "%.1fx smaller" % ratio, "", "",
               ">= %gx" % TARGET, ratio >= TARGET)


def compression_rows(folder: str, hosts: int, repo: str = REPO) -> List[Row]:
    """A 3-host Rush farm, the demo farm, and a Rush farm of ``hosts`` hosts (3,000: about 30,000 series);
    ``repo``: the checkout whose exporter runs."""
    rows = []
    for name, farm_hosts in (("3-host farm", 3), ("%d-host farm" % hosts, hosts)):
        acct = os.path.join(folder, "gzip-%d-%d.acct" % (farm_hosts, abs(hash(repo))))
        write_cpu_acct(acct, farm_hosts * 20, hosts=farm_hosts)
        config = write_text(acct + ".yml", "rush:\n  cpu_acct: ['%s']\n  hosts:\n    series_budget: %d\n" % (
            acct, 100 * farm_hosts))
        proc, url = start_exporter(config, repo=repo)
        try:
            rows.append(_row(name, *_ratio(url)))
        finally:
            stop(proc)
    port = free_port()
    demo = subprocess.Popen([sys.executable, "-m", "exporter", "--demo", "--web.listen-address",
                             "127.0.0.1:%d" % port, "--log.level", "warn"], cwd=repo)
    try:
        url = "http://127.0.0.1:%d" % port
        wait_http(url + "/-/ready")
        rows.append(_row("demo farm", *_ratio(url)))
    finally:
        stop(demo)
    return rows
