"""Cold start of many files until ``/-/ready`` beside mtail, and a restart from the checkpoint.

mtail reads files found at its start from their end, so its cold start is
its ``--one_shot`` run over the same files (from the start to EOF, then it
prints its counters): the time until every line is counted, as ``/-/ready``
is for the exporter. Both totals are checked against what the files hold.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import List

from bench.common import ExporterExited, Row, fetch, free_port, start_exporter, stop, timed, write_text
from bench.data import Totals, check_totals, parse_exposition, write_cpu_acct, write_mtail_progs


def _exporter_totals(url: str, name: str, totals: Totals) -> None:
    check_totals(name, parse_exposition(fetch(url + "/metrics").decode()), totals)


def cold_start(folder: str, files: int, lines: int) -> List[Row]:
    base = os.path.join(folder, "cold")
    os.makedirs(base)
    first = os.path.join(base, "h000.acct")
    totals = write_cpu_acct(first, lines, seed=5).times(files)
    for i in range(1, files):
        shutil.copyfile(first, os.path.join(base, "h%03d.acct" % i))
    pattern = os.path.join(base, "*.acct")
    mtail_seconds, mtail = timed(["mtail", "--one_shot", "--one_shot_format", "prometheus", "--progs",
                                  write_mtail_progs(folder), "--logs", pattern, "--logtostderr", "--address",
                                  "127.0.0.1", "--port", str(free_port())], timeout=3600)
    if mtail.returncode != 0:
        raise SystemExit("mtail failed: %s" % mtail.stderr.decode()[-2000:])
    check_totals("mtail", parse_exposition(mtail.stdout.decode()), totals)
    config = write_text(base + ".yml", "rush:\n  cpu_acct: ['%s']\n" % pattern)
    started = time.monotonic()
    proc, url = start_exporter(config)
    ready = time.monotonic() - started
    try:
        _exporter_totals(url, "exporter", totals)
    finally:
        stop(proc)
    ratio = mtail_seconds / ready
    return [
        Row("cold start: %d files x %d lines until /-/ready (identical totals checked)" % (files, lines),
            "%.2f s" % ready, "mtail --one_shot %.2f s" % mtail_seconds, "%.1fx" % ratio, ">= 5x mtail",
            ratio >= 5),
        restart(folder, config, totals),
    ]


def restart(folder: str, config: str, totals: Totals) -> Row:
    """Read everything with ``--storage.path``, stop with SIGTERM, start again: until ``/-/ready``."""
    figure = "restart with checkpoint (--storage.path) after %d lines" % totals.lines
    storage = os.path.join(folder, "checkpoint")
    flags = ("--storage.path", storage)
    with open(os.path.join(folder, "restart.log"), "wb") as log:
        try:
            proc, url = start_exporter(config, *flags, log=log)
        except ExporterExited as exc:
            if exc.returncode == 2 and "unrecognized arguments" in exc.log:
                return Row(figure, "not available: this exporter has no --storage.path yet", "", "",
                           "ready < 1 s, totals identical", None)
            raise
    stop(proc)
    if proc.returncode != 0:
        raise SystemExit("exporter did not stop cleanly on SIGTERM: exit %s" % proc.returncode)
    started = time.monotonic()
    proc, url = start_exporter(config, *flags)
    ready = time.monotonic() - started
    try:
        _exporter_totals(url, "exporter after a restart", totals)
    finally:
        stop(proc)
    return Row(figure, "ready in %.2f s, totals identical to a full re-read" % ready,
               "mtail: starts from the end, forgets", "", "ready < 1 s, totals identical", ready < 1.0)
