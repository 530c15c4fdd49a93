"""``python -m bench``: every figure side by side in one run, printed as one table.

``--smoke`` runs the same code on small inputs in well under a minute (CI
runs it so the benchmark cannot rot); ``--write`` also writes BENCHMARKS.md.
Absolute times on shared machines are noise: read the ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from bench import churn, cold, compression, figures, floor, isolation, rrclients, serving, steady
from bench.common import REPO, compile_exporter

FULL = {"lines": 1_000_000, "clients": 1000, "rush_hosts": 200, "scrapes": 300, "idle": 60.0, "rounds": 100,
        "poll_rounds": 10, "big_lines": 13_000_000, "appends": 100,
        "steady": ((200, 1.0), (2000, 0.1)), "steady_seconds": 60.0, "folders": 10_000, "farm_hosts": 3000,
        "steady_scrapes": (20, steady.SCRAPE_INTERVAL),
        "cold_files": 200, "cold_lines": 50_000, "rr_clients": rrclients.FULL, "churn": (60.0, 1000),
        "serving": (2000, 300, 300, 60.0), "isolation": (200, 100)}
SMOKE = {"lines": 20_000, "clients": 30, "rush_hosts": 20, "scrapes": 20, "idle": 2.0, "rounds": 5,
         "poll_rounds": 2, "big_lines": 20_000, "appends": 5,
         "steady": ((20, 1.0), (40, 0.5)), "steady_seconds": 3.0, "folders": 300, "farm_hosts": 60,
         "steady_scrapes": (3, 0.2),
         "cold_files": 5, "cold_lines": 2_000, "rr_clients": rrclients.SMOKE, "churn": (2.0, 100),
         "serving": (50, 5, 3, 2.0), "isolation": (20, 10)}


def table(rows) -> str:
    lines = ["| figure | exporter | peer | ratio | target | met |", "|---|---|---|---|---|---|"]
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append("| %s | %s | %s | %s | %s | %s |" % (row.figure, row.exporter, row.peer, row.ratio, row.target,
                                                          met))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="small inputs, for CI")
    parser.add_argument("--write", action="store_true", help="write BENCHMARKS.md with the table")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else FULL
    figures.ensure_peers()
    compile_exporter()
    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory(prefix="renderfarm-bench-") as folder:
        for name, run in (
            ("ingest", lambda: figures.ingest(folder, sizes["lines"])),
            ("farm", lambda: figures.farm_figures(folder, sizes["clients"], sizes["rush_hosts"], sizes["scrapes"],
                                                  sizes["idle"])),
            ("freshness", lambda: figures.freshness(folder, sizes["rounds"], sizes["poll_rounds"])),
            ("incremental", lambda: figures.incremental(folder, sizes["big_lines"], sizes["appends"])),
            *(("steady state, %d hosts" % hosts, lambda hosts=hosts, rate=rate: steady.steady_state(
                folder, hosts, rate, sizes["steady_seconds"], sizes["rounds"], *sizes["steady_scrapes"]))
              for hosts, rate in sizes["steady"]),
            ("realistic farm", lambda: steady.steady_state(
                folder, sizes["farm_hosts"], 0.0, sizes["steady_seconds"], sizes["rounds"], *sizes["steady_scrapes"],
                realistic=True)),
            ("compression", lambda: compression.compression_rows(folder, sizes["farm_hosts"])),
            ("steady state floor", lambda: floor.floor_row(folder, *sizes["steady"][0], sizes["steady_seconds"])),
            ("many folders", lambda: steady.many_folders(folder, sizes["folders"], sizes["idle"])),
            ("cold start and restart", lambda: cold.cold_start(folder, sizes["cold_files"], sizes["cold_lines"])),
            ("RR client files", lambda: rrclients.rr_clients(folder, **sizes["rr_clients"])),
            ("churn", lambda: churn.churn_rows(folder, *sizes["churn"])),
            ("serving", lambda: serving.rows(os.path.join(folder, "serving"), *sizes["serving"])),
            ("isolation", lambda: isolation.isolation_row(os.path.join(folder, "isolation"), *sizes["isolation"])),
        ):
            print("bench: %s ..." % name, file=sys.stderr, flush=True)
            measured = run()
            print(table(measured), file=sys.stderr, flush=True)  # a later failure keeps what was measured
            rows += measured
    result = table(rows)
    print(result)
    print("bench: %d figures in %.0f s" % (len(rows), time.monotonic() - started), file=sys.stderr)
    if args.write:
        with open(os.path.join(REPO, "BENCHMARKS.md"), "w") as handle:
            handle.write(report(result, args.smoke))
    return 0


def report(result: str, smoke: bool) -> str:
    """BENCHMARKS.md: the table of this run, then ``bench/reading.md`` (what the misses come from)."""
    with open(os.path.join(os.path.dirname(__file__), "reading.md")) as handle:
        reading = handle.read()
    return (
        "# Benchmarks\n\n"
        "One run of `python -m bench%s --write` on %s, on %s.\n"
        "Peers from Debian's packages, on the same machine in the same run; loopback only.\n"
        "Absolute times on these shared machines are noise: read the ratios.\n\n%s\n\n%s"
        % (" --smoke" if smoke else "", time.strftime("%Y-%m-%d"), figures.machine(), result, reading)
    )


if __name__ == "__main__":
    sys.exit(main())
