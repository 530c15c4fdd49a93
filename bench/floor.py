"""The floor of the steady-state row: the least CPython can do for the same load, beside mtail.

``python -m bench.floor FOLDER`` is a prototype, not the exporter: one thread
reads raw inotify events (ctypes, IN_MODIFY only, no watchdog), reads the
appended bytes of every changed file in batches every 100 ms (open, seek,
read, close), splits the lines and counts frames per host. No validation,
no snapshot, no metrics, no HTTP. If this alone costs more than half of
mtail's CPU, the steady-state target (at most half of mtail) is out of reach
for any design in CPython that reads each line once as it is written; the
row says by how much.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import subprocess
import sys
import time
from typing import Dict, List, Set

from bench.common import Row, cpu_percent, cpu_ratio, start_mtail, stop, wait_for
from bench.data import write_mtail_progs
from bench.steady import Appenders

IN_MODIFY = 0x2
BATCH_SECONDS = 0.1
_EVENT = struct.Struct("iIII")


def follow(folder: str) -> None:
    """Counts frames per host in the files of ``folder`` as they grow, until killed."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    if fd < 0 or libc.inotify_add_watch(fd, folder.encode(), IN_MODIFY) < 0:
        raise OSError(ctypes.get_errno(), "inotify")
    offsets: Dict[str, int] = {}
    frames: Dict[str, int] = {}
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    pending: Set[str] = set()
    due = None
    while True:
        if poller.poll(None if due is None else max(0.0, (due - time.monotonic()) * 1000)):
            pending.update(_names(os.read(fd, 65536)))
            due = due or time.monotonic() + BATCH_SECONDS
        if due is not None and time.monotonic() >= due:
            for name in pending:
                _count(os.path.join(folder, name), offsets, frames)
            pending.clear()
            due = None


def _names(buffer: bytes) -> List[str]:
    names, at = [], 0
    while at < len(buffer):
        _, _, _, length = _EVENT.unpack_from(buffer, at)
        names.append(buffer[at + 16:at + 16 + length].rstrip(b"\0").decode())
        at += 16 + length
    return names


def _count(path: str, offsets: Dict[str, int], frames: Dict[str, int]) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.lseek(handle, offsets.get(path, 0), os.SEEK_SET)
        data = os.read(handle, 1 << 20)
    finally:
        os.close(handle)
    offsets[path] = offsets.get(path, 0) + len(data)
    for line in data.decode().splitlines():
        fields = line.split()
        if fields and fields[0] == "p":
            frames[fields[6]] = frames.get(fields[6], 0) + 1


def floor_row(folder: str, hosts: int, rate: float, seconds: float) -> List[Row]:
    """The prototype and mtail on the same load at once, CPU of each from /proc."""
    base = os.path.join(folder, "floor-%d" % hosts)
    os.makedirs(base)
    load = Appenders(base, hosts, rate)
    prototype = subprocess.Popen([sys.executable, "-m", "bench.floor", base])
    mtail, _ = start_mtail(write_mtail_progs(folder), os.path.join(base, "*.acct"))
    try:
        with load:
            wait_for(lambda: load.written > hosts * rate, "the load to start", 30)
            mine, theirs = cpu_percent([prototype.pid, mtail.pid], seconds)
    finally:
        prototype.kill()
        prototype.wait()
        stop(mtail)
    return [Row("floor of the steady state: CPython prototype (raw inotify, read, split, count; no metrics), "
                "%d hosts x %g line/s, %.0f s" % (hosts, rate, seconds), "CPU %.1f%% of a core" % mine,
                "mtail %.1f%%" % theirs, cpu_ratio(mine, theirs), "report: the least CPython can do", None)]


if __name__ == "__main__":
    follow(sys.argv[1])
