"""Benchmark inputs with their own independent totals, and the equivalent mtail program."""

from __future__ import annotations

import os
import random
from collections import Counter, defaultdict
from typing import Dict, Mapping, Tuple

# Frames by host and status, wall seconds by host, utilization: what mtail can be asked for too.
MTAIL_PROGRAM = r"""
counter rush_frames_total by host, status
counter rush_frame_wall_seconds_total by host
gauge rush_utilization_ratio

/^p\s+\d+\s+\S+[-.]\d+\s+.+?\s+\S+\s+\S+\s+(?P<host>\S+)\s+\d+[A-Za-z]?\s+(?P<wall>\d+)\s+\d+\s+\d+\s+(?P<exit>-?\d+)\s+\d+\s*$/ {
  rush_frame_wall_seconds_total[$host] += $wall
  $exit == 0 {
    rush_frames_total[$host]["done"]++
  } else {
    $exit == 2 {
      rush_frames_total[$host]["requeue"]++
    } else {
      $exit < 0 {
        rush_frames_total[$host]["killed"]++
      } else {
        rush_frames_total[$host]["fail"]++
      }
    }
  }
}
/^u\s+\d+\s+(?P<pct>\d+)\s*$/ {
  rush_utilization_ratio = $pct / 100.0
}
"""  # noqa: E501 - an mtail pattern is one line


def write_mtail_progs(folder: str) -> str:
    """A folder holding the mtail program (written once per run)."""
    progs = os.path.join(folder, "progs")
    os.makedirs(progs, exist_ok=True)
    with open(os.path.join(progs, "rush.mtail"), "w") as handle:
        handle.write(MTAIL_PROGRAM)
    return progs


class Totals:
    """What the generated file holds, counted while writing it."""

    def __init__(self) -> None:
        self.frames: Counter = Counter()
        self.wall: Dict[str, float] = defaultdict(float)
        self.last_utilization = 0.0
        self.lines = 0

    def times(self, copies: int) -> Totals:
        """What ``copies`` copies of the file hold."""
        scaled = Totals()
        scaled.frames = Counter({key: count * copies for key, count in self.frames.items()})
        scaled.wall = defaultdict(float, {host: wall * copies for host, wall in self.wall.items()})
        scaled.last_utilization, scaled.lines = self.last_utilization, self.lines * copies
        return scaled


def _status(code: int) -> str:
    return "done" if code == 0 else "requeue" if code == 2 else "killed" if code < 0 else "fail"


def write_cpu_acct(path: str, lines: int, hosts: int = 200, users: int = 40, jobs: int = 2000,
                   seed: int = 1) -> Totals:
    """A realistic mix: 90% frames, utilization, midnight, state and daemon records; 10% space-aligned."""
    rng = random.Random(seed)
    host_names = ["render%03d" % i for i in range(hosts)]
    user_names = ["user%02d" % i for i in range(users)]
    totals = Totals()
    with open(path, "w") as out:
        out.write("r start 1700000000 online\n")
        totals.lines = 1
        for i in range(lines - 1):
            when = 1700000000 + i
            r = rng.random()
            if r < 0.90:
                host, wall, code = rng.choice(host_names), rng.randrange(10, 900), rng.choice((0, 0, 0, 0, 1, 2, -9))
                fields = ["p", str(when), "tahoe.%d" % rng.randrange(jobs), "SHOT_%03d/beauty" % rng.randrange(300),
                          rng.choice(user_names), "%04d" % rng.randrange(1000), host, "100k", str(wall),
                          str(rng.randrange(20)), str(rng.randrange(200)), str(code), str(rng.randrange(1000, 60000))]
                out.write(("  ".join(fields) if rng.random() < 0.1 else "\t".join(fields)) + "\n")
                totals.frames[(host, _status(code))] += 1
                totals.wall[host] += wall
            elif r < 0.97:
                percent = rng.randrange(101)
                out.write("u %d %d\n" % (when, percent))
                totals.last_utilization = percent / 100.0
            elif r < 0.98:
                out.write("m %d\n" % when)
            elif r < 0.99:
                out.write("s %d %s erco@render001[10.0.0.1] -\n" % (when, rng.choice(("online", "offline"))))
            else:
                out.write("d start %d online\n" % when)
            totals.lines += 1
    return totals


def parse_exposition(text: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    """name and sorted labels -> value, ignoring mtail's ``prog`` label."""
    from prometheus_client.parser import text_string_to_metric_families

    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "prog"))
            values[(sample.name, labels)] = sample.value
    return values


def check_totals(name: str, values: Mapping, totals: Totals) -> None:
    """Both tools must report exactly what the file holds."""
    for (host, status), count in totals.frames.items():
        got = values.get(("rush_frames_total", (("host", host), ("status", status))), 0)
        if got != count:
            raise SystemExit("%s: rush_frames_total{host=%s,status=%s} is %s, the file holds %d" % (
                name, host, status, got, count))
    for host, wall in totals.wall.items():
        got = values.get(("rush_frame_wall_seconds_total", (("host", host),)))
        if got != wall:
            raise SystemExit("%s: wall seconds of %s are %s, the file holds %s" % (name, host, got, wall))
