"""A simulated Royal Render farm: writes the stand-in module's files as an RR server would.

For the demo and the tests: ``server_stats.db``, today's daily stats file,
``clientIPstats82.db``, one stats file per client, render time, license,
client group and frame stats files, with a plausible day cycle (busier at
night). ``write_all()`` writes everything; ``step()`` rewrites each file on
the vendor's cadence (server stats every slot, client stats every item, daily
stats every 15 minutes) divided by ``speed``. Files can be shaped like RR 8 or
RR 9, and ``inject`` makes a file crash or hang the module, unreadable, or
half written.
"""

from __future__ import annotations

import calendar
import math
import os
import random
import time
from typing import Any, Callable, Dict, Optional

from exporter.simulation import simformat
from exporter.simulation.standin import RR8_NAMES, RR9_GLOBAL_FIELDS

SHAPES = {
    "rr9": {"day_max": 1440, "client_items": 2880},
    "rr8": {"day_max": 960, "client_items": 4320},
}
FAULTS = ("crash", "hang", "unreadable", "half_written")
USERS = ("anna", "bjorn", "chen", "dara", "emil", "fatima")
PROJECTS = ("FancyDrink-Commercial", "Feature_SEQ02", "Teaser_v12")
RENDER_APPS = ("Maya", "Houdini", "Nuke", "Blender")
CLIENT_ITEMS_KEPT = 60  # the files only need recent items for the exporter
YEAR_SLOTS_KEPT = 200  # 50 days of 6-hour slots: history beyond the month array's 30 days


def local_seconds(unix: float) -> int:
    """RR's notion of time: local wall-clock seconds since 1970."""
    return calendar.timegm(time.localtime(unix))


class RrFarmSimulator:
    def __init__(self, root: str, clients: int = 20, shape: str = "rr9", seed: Optional[int] = None,
                 clock=time.time, speed: float = 1.0):
        self.root = root
        self.shape = shape
        self.speed = speed
        self._last_write: Dict[str, float] = {}
        self.stats_dir = os.path.join(root, "sub", "stats")
        self.client_dir = os.path.join(self.stats_dir, "clients")
        self.clients = ["rrclient%03d" % i for i in range(1, clients + 1)]
        self._rng = random.Random(seed)
        self._clock = clock
        self._faults: Dict[str, str] = {}

    # -- where things are ------------------------------------------------------------

    def path(self, kind: str, client: str = "") -> str:
        return {
            "server_stats": os.path.join(self.stats_dir, "server_stats.db"),
            "client_info": os.path.join(self.stats_dir, "clientIPstats82.db"),
            "daily_stats": os.path.join(self.stats_dir, "server", "daily_%s.db" % self._today()),
            "client_stats": os.path.join(self.client_dir, "%s.db" % client),
            "render_time": os.path.join(self.stats_dir, "renderTimes.db"),
            "licenses": os.path.join(self.root, "sub", "cfg_global", "renderLicenses.db"),
            "client_groups": os.path.join(self.root, "sub", "cfg_user", "clientgroups.ini"),
            "frame_stats": os.path.join(self.stats_dir, "frames", "%s.db" % client),
        }[kind]

    def config_text(self, indent: str = "") -> str:
        """The ``royalrender`` config section for this farm (stand-in module)."""
        lines = [
            "royalrender:",
            "  root: '%s'" % self.root,
            "  module: simulated",
            "  read_timeout: 5s",
            "  client_stats:",
            "    path: '%s'" % os.path.join(self.client_dir, "*.db"),
            "    client_from_path: '/(?P<client>[^/]+)\\.db$'",
            "  render_time:",
            "    path: '%s'" % self.path("render_time"),
            "  licenses:",
            "    path: '%s'" % self.path("licenses"),
            "  frame_stats:",
            "    enabled: true",
            "    path: '%s'" % os.path.join(self.stats_dir, "frames", "*.db"),
            "    max_jobs: 5",
        ]
        return "".join(indent + line + "\n" for line in lines)

    def _today(self) -> str:
        return time.strftime("%Y-%m-%d", time.localtime(self._clock()))

    # -- writing -------------------------------------------------------------------------

    def write_all(self) -> None:
        for kind in ("daily_stats", "client_stats", "licenses", "client_groups", "frame_stats"):
            os.makedirs(os.path.dirname(self.path(kind, "x")), exist_ok=True)
        self.write_server_stats()
        self.write_daily_stats()
        self.write_client_info()
        for client in self.clients:
            self.write_client_stats(client)
        self.write_render_time()
        self.write_licenses()
        self.write_client_groups()
        for number in range(1, 9):
            self.write_frame_stats("job%04d" % number)

    def cadence(self) -> Dict[str, float]:
        """Seconds between saves of each file kind, as RR saves them (before ``speed``)."""
        shape = SHAPES[self.shape]
        return {"server_stats": 86400.0 / shape["day_max"], "client_stats": 86400.0 / shape["client_items"],
                "daily_stats": 900.0, "client_info": 60.0, "render_time": 600.0, "licenses": 3600.0,
                "client_groups": 3600.0, "frame_stats": 300.0}

    def step(self, now: Optional[float] = None) -> None:
        """Rewrites the files whose save is due, as the RR server and clients would.

        ``now`` (monotonic seconds) lets a test step the cadence without waiting for it.
        """
        now = time.monotonic() if now is None else now

        def write_all_client_stats() -> None:
            for client in self.clients:
                self.write_client_stats(client)

        writers: Dict[str, Callable[[], None]] = {
                   "server_stats": self.write_server_stats, "daily_stats": self.write_daily_stats,
                   "client_info": self.write_client_info, "render_time": self.write_render_time,
                   "licenses": self.write_licenses, "client_groups": self.write_client_groups,
                   "client_stats": write_all_client_stats,
                   "frame_stats": lambda: self.write_frame_stats("job%04d" % self._rng.randint(1, 8))}
        for kind, interval in self.cadence().items():
            if now - self._last_write.get(kind, float("-inf")) >= interval / self.speed:
                self._last_write[kind] = now
                writers[kind]()

    def inject(self, kind: str, fault: str, client: str = "") -> None:
        """Breaks one file: ``crash`` or ``hang`` the module, ``unreadable`` or ``half_written``."""
        if fault not in FAULTS:
            raise ValueError("fault must be one of %s" % ", ".join(FAULTS))
        self._faults[kind + client] = fault
        self._write(kind, client, {})

    def heal(self, kind: str, client: str = "") -> None:
        self._faults.pop(kind + client, None)

    def wait_until_hung(self, kind: str, client: str = "", timeout: float = 10.0) -> None:
        """Returns once the module hangs in a read of the ``hang`` file ``inject`` made (a state, not a guess)."""
        marker = self._hang_marker(kind, client)
        deadline = time.monotonic() + timeout
        while not os.path.exists(marker):
            if time.monotonic() > deadline:
                raise TimeoutError("no read of %s hung within %.0f s" % (self.path(kind, client), timeout))
            time.sleep(0.02)

    def _hang_marker(self, kind: str, client: str) -> str:
        return self.path(kind, client) + ".hanging"

    def _write(self, kind: str, client: str, payload: Dict[str, Any]) -> None:
        path = self.path(kind, client)
        fault = self._faults.get(kind + client)
        cls = {"server_stats": "_rrGlobalStatsLS", "daily_stats": "_dailyStats_data",
               "client_info": "_server_clientInfo", "client_stats": "_rrClientStats_data",
               "render_time": "_StatsRenderTime", "licenses": "_AppLicenses_v8",
               "client_groups": "_ClientGroupList", "frame_stats": "_frameStatJob"}[kind]
        if fault == "unreadable":
            with open(path, "wb") as handle:
                handle.write(os.urandom(512))
            return
        if fault == "crash":
            payload = dict(payload, fault=fault)
        if fault == "hang":
            payload = dict(payload, fault=fault, hang_marker=self._hang_marker(kind, client))
        if fault == "half_written":
            simformat.write(path, cls, payload)
            with open(path, "r+b") as handle:
                handle.truncate(max(1, os.path.getsize(path) // 2))
            return
        simformat.write(path, cls, payload, mtime=self._clock())

    # -- the farm's state at a time ------------------------------------------------------

    def _busy(self, local: float) -> float:
        """Share of the farm rendering: high at night, lower in the afternoon."""
        hour = (local % 86400) / 3600.0
        return 0.55 + 0.35 * math.cos((hour - 2.0) / 24.0 * 2 * math.pi)

    def _global_item(self, local: float, slot_seconds: float) -> Dict[str, Any]:
        rng, n = self._rng, len(self.clients)
        busy = self._busy(local)
        disabled = max(0, int(n * 0.05))
        rendering = min(n - disabled, int(round((n - disabled) * busy)))
        frames = rendering * slot_seconds / 240.0 * rng.uniform(0.8, 1.2)
        values = {
            "clients_needed": round(rendering * rng.uniform(1.0, 1.6), 1), "framesPerMin": round(frames),
            "framesPerMin_3D": round(frames * 0.7), "framesPerMin_Comp": round(frames * 0.25),
            "framesPerMin_Archive": round(frames * 0.05), "clients_free": n - disabled - rendering,
            "clients_rendering": rendering, "clients_disabled": disabled,
            "CpuProcess": rng.randint(2, 25), "CpuMachine": rng.randint(10, 60),
            "serverTemperature": rng.randint(34, 45), "clients_avTemperature": rng.randint(38, 52),
            "jobs_unfinished": 40 + rng.randint(0, 20), "jobs_rendering": max(1, rendering // 3),
            "jobs_total": 400 + rng.randint(0, 50), "serverMemUsage_Machine": 24000 + rng.randint(0, 2000),
            "serverMemUsage_Process": 3000 + rng.randint(0, 500), "serverMemUsage_TCPSocket": 64,
            "serverMemUsage_TCPData": 128, "serverMemUsage_JobBuffer": 900 + rng.randint(0, 100),
            "serverMemUsage_TCPDataCompressed": 32, "frameTime": rng.randint(200, 400),
            "framesLeft": 20000 + rng.randint(0, 5000),
        }
        if self.shape == "rr8":
            values = {RR8_NAMES.get(name, name): values[name] for name in RR9_GLOBAL_FIELDS}
        values["slot_used"] = True
        return values

    def write_server_stats(self) -> None:
        day_max = SHAPES[self.shape]["day_max"]
        slot = 86400.0 / day_max
        local = local_seconds(self._clock())
        last_save = int(local // slot)
        day = {str((last_save - back) % day_max): self._global_item((last_save - back) * slot, slot)
               for back in range(day_max)}
        self._write("server_stats", "", {
            "shape": self.shape, "dayMax": day_max, "monthMax": day_max, "yearMax": day_max,
            "lastSaveDay": last_save, "lastSaveMonth": int(local // 1800), "lastSaveYear": int(local // 21600),
            "day": day, "month": self._pushed_down(local, 1800.0, day_max, day_max),
            "year": self._pushed_down(local, 21600.0, day_max, YEAR_SLOTS_KEPT),
        })

    def _pushed_down(self, local: float, seconds: float, size: int, kept: int) -> Dict[str, Any]:
        """A month or year array: index size-1 is the last completed slot, older ones below it."""
        last_completed_start = (int(local // seconds) - 1) * seconds
        return {str(size - 1 - back): self._global_item(last_completed_start - back * seconds, seconds)
                for back in range(min(kept, size))}

    def write_daily_stats(self) -> None:
        local = local_seconds(self._clock())
        current = int((local % 86400) // 900)
        entries = []
        for type_id, names in enumerate((USERS, PROJECTS, RENDER_APPS)):
            for name in names:
                slots = {str(idx): self._job_stat(local - (current - idx) * 900) for idx in range(current + 1)}
                entries.append({"name": name, "type": type_id, "slots": slots})
        self._write("daily_stats", "", {"shape": self.shape, "stats": entries})

    def _job_stat(self, local: float) -> Dict[str, Any]:
        rng = self._rng
        busy = self._busy(local)
        return {
            "slotSet": True, "avPSUsage": round(busy * 40, 1), "maxPSUsage": round(busy * 60, 1),
            "PSneeded": round(busy * 80, 1), "renderLicNeeded": round(busy * 10, 1),
            "jobsWaiting": rng.randint(0, 5), "jobsDisabled": rng.randint(0, 2), "jobsIdle": rng.randint(0, 3),
            "jobsRendering": rng.randint(0, 6), "jobsDone": rng.randint(10, 40), "timesSended": rng.randint(5, 60),
            "timesFinished": rng.randint(5, 60), "avMemUsageMB": rng.randint(2000, 8000),
            "maxMemUsageMB": rng.randint(8000, 32000), "avFrameTime": rng.randint(60, 600),
            "maxFrameTime": rng.randint(600, 3600), "framesRendered": rng.randint(0, 400),
            "framesLeft": rng.randint(0, 4000),
        }

    def write_client_info(self) -> None:
        now = int(self._clock())
        rng = self._rng
        clients = []
        for i, name in enumerate(self.clients):
            woke = i % 7 != 3
            clients.append({
                "saveNameCopy": name, "saveVersionCopy": "9.1.%d" % (i % 3), "lastConnect": now - rng.randint(0, 60),
                "lastWOLTry": now - 3600 * (1 + i % 5), "WOLTryCount": 0 if woke else 1 + i % 3,
                "ips": [["10.1.0.%d" % (i + 1), now - 86400]],
                "wols": [{"success": woke, "bootTime": 40 + i % 30 if woke else 0,
                          "dateTime": now - 3600 * (1 + i % 5)}],
            })
        self._write("client_info", "", {"clients": clients})

    def write_client_stats(self, client: str) -> None:
        items_per_day = SHAPES[self.shape]["client_items"]
        item_seconds = 86400.0 / items_per_day
        local = local_seconds(self._clock())
        current = int((local % 86400) // item_seconds)
        rng = self._rng
        busy = self._busy(local) > rng.random()
        items = {}
        for idx in range(max(0, current - CLIENT_ITEMS_KEPT + 1), current + 1):
            threads = [{"status": 5, "cpuRender": round(rng.uniform(0.6, 0.98), 3),
                        "memRender10MB": rng.randint(200, 1600), "jobIDShort": rng.randint(1, 2**31)}
                       for _ in range(2 if busy else 0)]
            items[str(idx)] = {"userLoggedIn": False, "cpuTotal": round(rng.uniform(0.7, 1.0) if busy else
                                                                         rng.uniform(0.0, 0.05), 3),
                               "gpuTotal": round(rng.uniform(0.0, 0.5), 3), "memTotal10MB": rng.randint(400, 6000),
                               "networkInMB": -1, "networkOutMB": -1, "networkInSpeedMaxMB": 0, "threads": threads}
        hour = int((local % 86400) // 3600)
        hourly = {str(hour): [{"framesDone": rng.randint(0, 40), "jobCrashed": rng.randint(0, 1),
                               "jobAborted": rng.randint(0, 1), "jobSuccessful": rng.randint(0, 10)}
                              for _ in range(2)]}
        day: Dict[str, Any] = {"daySet": True, "day": int(local // 86400), "data": items, "hourly": hourly}
        self._write("client_stats", client, {"shape": self.shape, "days": {"179": day}})

    def write_render_time(self) -> None:
        rng, now = self._rng, int(self._clock())
        projects = [{"name": project, "lastUsed": now - 3600 * i,
                     "layers": [{"name": layer, "jobsAdded": rng.randint(1, 300),
                                 "times": [rng.randint(600, 20000) for _ in range(rng.randint(1, 100))]}
                                for layer in ("beauty", "Ambient Occlusion", "fx")]}
                    for i, project in enumerate(PROJECTS)]
        self._write("render_time", "", {"settingsFileDate": now, "projects": projects})

    def write_licenses(self) -> None:
        licenses = [
            {"app": "Arnold", "plugin": "", "version": 7, "regions": [
                {"count": 40, "cost": 1.5}, {"set": False}, {"set": True, "count": 30, "cost": 1.0}, {"set": False}]},
            {"app": "Nuke", "plugin": "Sapphire", "version": 14, "regions": [
                {"count": 10, "cost": 3.0}, {"set": False}, {"set": False}, {"set": True, "unlimited": True}]},
        ]
        self._write("licenses", "", {"licenses": licenses})

    def write_client_groups(self) -> None:
        half = len(self.clients) // 2
        groups = [{"name": "GPU", "clients": self.clients[:half]}, {"name": "Nuke", "clients": self.clients[half:]},
                  {"name": "All", "clients": list(self.clients)}]
        self._write("client_groups", "", {"settingsFileDate": int(self._clock()), "groups": groups})

    def write_frame_stats(self, job: str) -> None:
        rng, now = self._rng, int(self._clock())
        frames = [{"logFileStart": now - 600, "logFileStartFrame": 1, "renderTime5Sec": rng.randint(10, 200),
                   "frameNrJob": n, "client": rng.choice(self.clients), "averageValue": 1,
                   "parts": [{"jobMemoryMB": rng.randint(1000, 9000), "jobCPU": 0.9, "nonJobCPU": 0.05,
                              "renderThreads": 1} for _ in range(5)]}
                  for n in range(1, rng.randint(5, 40))]
        self._write("frame_stats", job, {"frames": frames})

