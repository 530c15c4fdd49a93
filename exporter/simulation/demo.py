"""The demo farm: live Rush logs and a simulated Royal Render farm in a temporary folder.

The daemon watches the folder exactly as it would a real farm, so ``--demo``
runs the real watch -> read -> serve path. Rush: frames finish, utilization
is logged, daemons go offline and online, and logs rotate by rename
(``cpu.acct`` -> ``Ocpu.acct``) now and then; lines mix the space-aligned
and TAB-delimited layouts, as real farms do. Royal Render: the simulator
(``exporter.simulation.simulator``) rewrites the server, daily, client-info
and per-client stats files every few seconds, read through the stand-in
module in the worker process.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from exporter.config import Config, parse
from exporter.logs import fields
from exporter.simulation.simulator import RrFarmSimulator

log = logging.getLogger(__name__)

USERS = ("erco", "anna", "bjorn", "chen", "dara", "emil", "fatima", "gus")
SHOTS = ("SHOT_010", "SHOT_020", "SHOT_030", "SEQ02_SH110", "WERNER/C33", "KILLER", "teaser_v12")
PASSES = ("beauty", "comp", "fx", "ao", "lighting")
QUEUE_SERVER = "tahoe"


class _Job:
    def __init__(self, rng: random.Random, number: int):
        self.jobid = "%s%s%d" % (QUEUE_SERVER, rng.choice("-."), number)
        self.title = "%s/%s" % (rng.choice(SHOTS), rng.choice(PASSES))
        self.owner = rng.choice(USERS)
        self.priority = "%d%s" % (rng.choice((100, 150, 200)), rng.choice(("", "k", "a")))
        self.next_frame = rng.randint(1, 100)
        self.mean_seconds = rng.choice((40, 90, 300, 900))


class DemoFarm:
    """Writes the logs; ``step()`` advances the farm by one tick of simulated work."""

    def __init__(self, folder: str, hosts: int = 36, seed: Optional[int] = None,
                 clock: Callable[[], float] = time.time):
        self.folder = folder
        self._rng = random.Random(seed)
        self._clock = clock
        self._hosts = ["render%02d" % i for i in range(1, hosts + 1)]
        self._jobs: List[_Job] = [_Job(self._rng, 700 + i) for i in range(12)]
        self._online: Dict[str, bool] = {h: True for h in self._hosts}
        self._now = int(clock())
        self._steps = 0
        #: seconds a step advances the farm's clock; the history ``create`` writes ends now, never later
        self.step_seconds = 5

    def path(self, host: str) -> str:
        return os.path.join(self.folder, host, "cpu.acct")

    def config_text(self) -> str:
        return (
            "rush:\n"
            "  cpu_acct:\n"
            "    - path: '%s/**/cpu.acct'\n"
            "      host_from_path: '/(?P<host>[^/]+)/O?cpu\\.acct$'\n"
            "  breakdowns:\n"
            "    users: {enabled: true, series_budget: 100}\n"
            "    titles: {enabled: true, series_budget: 200}\n"
            "watch:\n"
            "  rescan_interval: 30s\n" % self.folder
        )

    def create(self, backlog_steps: int = 40) -> None:
        """Starts every host's log and writes some history so the metrics are not empty.

        The history is dated in the past and ends now; later steps are dated by the clock, so no record is ever
        ahead of it (a record ahead of the clock is what a host with a wrong clock writes, and is warned about).
        """
        self._now = int(self._clock()) - backlog_steps * self.step_seconds
        for host in self._hosts:
            os.makedirs(os.path.dirname(self.path(host)), exist_ok=True)
            self._append(host, ["r start %d online" % self._now])
        for _ in range(backlog_steps):
            self.step()

    def step(self) -> None:
        self._steps += 1
        self._now = min(self._now + self.step_seconds, int(self._clock()))
        for host in self._hosts:
            lines = self._host_lines(host)
            if lines:
                self._append(host, lines)
        if self._steps % 240 == 0:
            self._rotate(self._rng.choice(self._hosts))

    def _host_lines(self, host: str) -> List[str]:
        rng = self._rng
        lines = []
        if rng.random() < 0.01:
            self._online[host] = not self._online[host]
            state = "online" if self._online[host] else "offline"
            lines.append("s %d %s %s@%s[10.0.0.%d] %s" % (
                self._now, state, rng.choice(USERS), host, 1 + self._hosts.index(host),
                "maintenance" if state == "offline" else "-"))
        if self._online[host] and rng.random() < 0.35:
            lines.append(self._frame_line(host))
        if self._steps % 20 == 0:
            busy = rng.randint(60, 100) if self._online[host] else 0
            lines.append("u %d %d" % (self._now, busy))
        return lines

    def _frame_line(self, host: str) -> str:
        rng = self._rng
        job = rng.choice(self._jobs)
        frame = "%04d" % job.next_frame
        job.next_frame += 1
        wall = max(1, int(rng.gauss(job.mean_seconds, job.mean_seconds / 4)))
        exit_code = rng.choices((0, 1, 2, -9, -15), weights=(90, 4, 3, 2, 1))[0]
        fields_ = ["p", str(self._now), job.jobid, job.title, job.owner, frame, host, job.priority,
                   str(wall), str(wall // 40), str(wall // 8), str(exit_code), str(rng.randint(1000, 60000))]
        if rng.random() < 0.5:
            return "\t".join(fields_)
        return "%s  %s %-12s %-14s %-8s %s  %s %-5s %4s %3s %4s %3s %s" % tuple(fields_)

    def _rotate(self, host: str) -> None:
        """Rush's rotation: close the log with ``r end``, rename it, start a new one."""
        state = "online" if self._online[host] else "offline"
        self._append(host, ["r end %d %s" % (self._now, state)])
        os.replace(self.path(host), os.path.join(os.path.dirname(self.path(host)), "Ocpu.acct"))
        self._append(host, ["r start %d %s" % (self._now, state)])

    def _append(self, host: str, lines: List[str]) -> None:
        with open(self.path(host), "a", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))


class Ticker:
    """Calls ``step`` every ``interval`` seconds on a thread until stopped."""

    def __init__(self, interval: float, step, name: str):
        self._interval = interval
        self._step = step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._step()
            except OSError as exc:
                log.warning("demo farm could not write", extra=fields(error=exc))


def create_farm(folder: str, seed: Optional[int] = None,
                clock: Callable[[], float] = time.time) -> Tuple[DemoFarm, RrFarmSimulator, Config]:
    """The demo's two farms written under ``folder``, and the config that reads them; with a seed and a fixed
    clock the files are the same on every run (the golden expositions in ``tests/golden/`` are rendered from them)."""
    rush = DemoFarm(os.path.join(folder, "rush"), seed=seed, clock=clock)
    # 12x the vendor's cadence: server stats every 5 s, client stats every 2.5 s.
    royalrender = RrFarmSimulator(os.path.join(folder, "rr"), clients=24, seed=seed, clock=clock, speed=12.0)
    rush.create()
    royalrender.write_all()
    return rush, royalrender, parse(rush.config_text() + royalrender.config_text(), "<demo config>")


@contextmanager
def demo_farm() -> Iterator[Config]:
    """``--demo``: a live demo farm in a temporary folder, and the config that reads it.

    The caller runs the real daemon on the config; the farm writes until the
    ``with`` block ends, then its folder is removed.
    """
    folder = tempfile.mkdtemp(prefix="renderfarm-exporter-demo-")
    tickers: List[Ticker] = []
    try:
        rush, royalrender, config = create_farm(folder)
        tickers = [Ticker(0.5, rush.step, "demo-rush"), Ticker(1.0, royalrender.step, "demo-royalrender")]
        log.info("demo farm running", extra=fields(folder=folder))
        for ticker in tickers:
            ticker.start()
        yield config
    finally:
        for ticker in tickers:
            ticker.stop()
        shutil.rmtree(folder, ignore_errors=True)
