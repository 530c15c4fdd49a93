"""Helpers shared by the figures: processes on loopback, HTTP, CPU and memory readings."""

from __future__ import annotations

import compileall
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import IO, Callable, List, Optional, Sequence, Tuple


@dataclass
class Row:
    figure: str
    exporter: str
    peer: str
    ratio: str
    target: str
    met: Optional[bool]


def ms(seconds: float) -> str:
    return "%.2f ms" % (1000 * seconds)


def write_text(path: str, text: str) -> str:
    with open(path, "w") as handle:
        handle.write(text)
    return path


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def compile_exporter() -> None:
    """The exporter's modules compiled, as a ``pip install`` leaves them (scripts/install, the Dockerfile).

    A checkout installed with ``pip install -e`` under ``PYTHONDONTWRITEBYTECODE`` (set on this machine)
    would otherwise compile every module at each start: ~80 ms of a one-shot read, and again in the daemon's
    forkserver for its worker processes (measured: empty-config ``--once`` after the start-up cut, median
    0.49 -> 0.41 s)."""
    if not compileall.compile_dir(os.path.join(REPO, "exporter"), quiet=1):
        raise SystemExit("bench: cannot compile the exporter's modules")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, gzip: bool = False, openmetrics: bool = False) -> bytes:
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    if openmetrics:
        headers["Accept"] = "application/openmetrics-text; version=1.0.0"
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


class ExporterExited(Exception):
    """The exporter ended before it was ready (``log`` holds its stderr when one was given)."""

    def __init__(self, returncode: int, log: str):
        super().__init__("exporter exited with %d before it was ready: %s" % (returncode, log[-2000:]))
        self.returncode = returncode
        self.log = log


def spawn_exporter(config_path: str, *extra: str, log: Optional[IO[bytes]] = None,
                   repo: str = REPO) -> Tuple[subprocess.Popen, str]:
    """The exporter on a free loopback port, not waited for; ``repo``: the checkout whose ``exporter`` runs
    (another tree, e.g. an older commit's ``git archive``, to measure before and after in one run)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "--config", config_path, "--web.listen-address",
                             "127.0.0.1:%d" % port, "--log.level", "warn", *extra], cwd=repo, stderr=log)
    return proc, "http://127.0.0.1:%d" % port


def start_exporter(config_path: str, *extra: str, timeout: float = 1800.0,
                   log: Optional[IO[bytes]] = None, repo: str = REPO) -> Tuple[subprocess.Popen, str]:
    """The exporter on a free loopback port, once ready (its first full read done)."""
    proc, url = spawn_exporter(config_path, *extra, log=log, repo=repo)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "/-/ready", timeout=2).status == 200:
                return proc, url
        except OSError:
            if proc.poll() is not None:
                raise ExporterExited(proc.returncode, _read_log(log)) from None
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("exporter not ready after %.0f s" % timeout)


def _read_log(log: Optional[IO[bytes]]) -> str:
    if log is None:
        return ""
    log.flush()
    with open(log.name, "rb") as handle:
        return handle.read().decode(errors="replace")


def start_mtail(progs: str, logs: str) -> Tuple[subprocess.Popen, str]:
    """mtail tailing ``logs`` (a glob) on a free loopback port. It reads files found at start from their end."""
    port = free_port()
    proc = subprocess.Popen(["mtail", "--progs", progs, "--logs", logs, "--address", "127.0.0.1", "--port",
                             str(port), "--logtostderr"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:%d" % port
    wait_http(url + "/metrics", timeout=60)
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (the RR worker is a separate process)."""
    return sum(_stat_ticks(pid, children=False)) / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process, its reaped children and its live descendants (reader processes, workers)."""
    return _tree_ticks(pid) / CLOCK_TICKS


def _tree_ticks(pid: int) -> int:
    total = sum(_stat_ticks(pid, children=True))
    for child in _children(pid):
        try:
            total += _tree_ticks(child)
        except OSError:  # ended meanwhile: its time is in our reaped-children fields from now on
            pass
    return total


def _stat_ticks(pid: int, children: bool) -> List[int]:
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return [int(f) for f in fields[11:15 if children else 13]]


def _children(pid: int) -> List[int]:
    found: List[int] = []
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as handle:
                found += [int(child) for child in handle.read().split()]
        except OSError:
            pass
    return found


def metric_sum(body: bytes, name: str) -> float:
    """The sum of a metric's samples over all its labels (0 when absent)."""
    prefix = name.encode()
    return sum(float(line.rsplit(b" ", 1)[1]) for line in body.splitlines()
               if line.startswith(prefix) and line[len(prefix):len(prefix) + 1] in (b"{", b" "))


def wait_for(check, what: str, timeout: float) -> float:
    """Polls ``check()`` until true; the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit("%s: not reached after %.0f s" % (what, timeout))
        time.sleep(0.01)
    return time.monotonic() - started


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


def latencies(url: str, gzip: bool, count: int) -> List[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        fetch(url, gzip)
        times.append(time.perf_counter() - started)
    return times


def visible_after(url: str, change: Callable[[], None], visible: Callable[[bytes], bool],
                   timeout: float) -> float:
    change()
    started = time.monotonic()
    while not visible(fetch(url + "/metrics")):
        if time.monotonic() - started > timeout:
            raise SystemExit("change not visible after %.0f s" % timeout)
        time.sleep(0.005)
    return time.monotonic() - started


def cpu_ratio(mine: float, theirs: float) -> str:
    """``mine / theirs`` as a ratio; a peer that used no measurable CPU (a short smoke run) has none."""
    return "%.2fx" % (mine / theirs) if theirs > 0 else "peer under one clock tick"


def cpu_percent(pids: Sequence[int], seconds: float) -> List[float]:
    """Each process tree's CPU over the same ``seconds``, in percent of one core."""
    before, started = [tree_cpu_seconds(pid) for pid in pids], time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    return [100.0 * (tree_cpu_seconds(pid) - was) / elapsed for pid, was in zip(pids, before)]
