"""Test helpers: the real daemon as a subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Callable, Dict, FrozenSet, Optional, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

Samples = Dict[Tuple[str, FrozenSet[Tuple[str, str]]], float]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``needs_root`` says so when it is not run as root, instead of failing obscurely."""
    if item.get_closest_marker("needs_root") is not None and os.geteuid() != 0:
        pytest.fail("needs root (mounts or namespaces), as CI has: run scripts/test as root", pytrace=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_samples(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels) -> Optional[float]:
    return samples.get((name, frozenset(labels.items())))


def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))


class Daemon:
    """``renderfarm-exporter`` started as a subprocess, talked to over HTTP."""

    def __init__(self, args, env=None, preexec_fn=None, command=None, run_as=()):
        """``command`` runs the exporter (default: this Python, ``-m exporter``), e.g. as another user;
        ``run_as``: a command the daemon runs under, as a service would (``setpriv --reuid=nobody ...``)."""
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.stderr_path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "exporter-%d.log" % self.port)
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [*run_as, *(command or [sys.executable, "-m", "exporter"]), "--web.listen-address",
             "127.0.0.1:%d" % self.port,
             "--log.level", "debug", *args],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=self._stderr, env=env, preexec_fn=preexec_fn,
        )

    def get(self, path: str, headers=None) -> Tuple[int, Dict[str, str], bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("daemon exited with %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                return self.get("/-/ready")[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout, "the daemon to be ready")

    def samples(self) -> Samples:
        status, _, body = self.get("/metrics")
        assert status == 200
        return parse_samples(body.decode())

    def wait_for_value(self, name: str, expected: float, timeout: float = 10.0, **labels) -> Samples:
        seen = {}

        def check():
            seen["samples"] = self.samples()
            return value(seen["samples"], name, **labels) == expected

        try:
            wait_until(check, timeout, "%s%s == %s" % (name, labels, expected))
        except AssertionError:
            raise AssertionError("%s%s is %s, expected %s" % (
                name, labels, value(seen["samples"], name, **labels), expected)) from None
        return seen["samples"]

    def log(self) -> str:
        with open(self.stderr_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def stop(self) -> float:
        """SIGTERM; returns how long the clean exit took."""
        if self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._stderr.close()
        return time.monotonic() - started


@pytest.fixture
def start_daemon():
    daemons = []

    def start(*args, env=None, ready=True, preexec_fn=None, command=None, run_as=()) -> Daemon:
        daemon = Daemon(args, env=env, preexec_fn=preexec_fn, command=command, run_as=run_as)
        daemons.append(daemon)
        if ready:
            daemon.wait_ready()
        return daemon

    yield start
    for daemon in daemons:
        daemon.stop()


@pytest.fixture
def write_config(tmp_path):
    def write(text: str) -> str:
        path = tmp_path / "config.yml"
        path.write_text(text)
        return str(path)

    return write


@pytest.fixture(scope="session")
def demo_exposition():
    """The demo farm's full exposition, Royal Render series included (read once per test run)."""
    daemon = Daemon(["--demo"])
    try:
        daemon.wait_ready()
        wait_until(lambda: b"royalrender_job_frames_recorded" in daemon.get("/metrics")[2], 30, "RR series")
        return daemon.get("/metrics")[2].decode()
    finally:
        daemon.stop()
