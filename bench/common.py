"""Helpers shared by the figures: processes on loopback, HTTP, CPU and memory readings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import List, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, gzip: bool = False) -> bytes:
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
        return response.read()


def wait_http(url: str, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fetch(url)
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("no answer from %s after %.0f s" % (url, timeout))


def start_exporter(config_path: str, timeout: float = 1800.0) -> Tuple[subprocess.Popen, str]:
    """The exporter on a free loopback port, once ready (its first full read done)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "--config", config_path, "--web.listen-address",
                             "127.0.0.1:%d" % port, "--log.level", "warn"], cwd=REPO)
    url = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "/-/ready", timeout=2).status == 200:
                return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("exporter not ready after %.0f s" % timeout)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (the RR worker is a separate process)."""
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    with open("/proc/%d/status" % pid) as handle:
        return int(handle.read().split("VmRSS:")[1].split()[0]) / 1024.0


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(command: List[str], **kwargs) -> Tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, **kwargs)
    return time.perf_counter() - started, result


def series_count(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
