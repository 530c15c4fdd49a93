"""Test helpers: the real daemon as a subprocess on a free loopback port; the tiers; the golden files."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

Samples = Dict[Tuple[str, FrozenSet[Tuple[str, str]]], float]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- tiers (docs/architecture.md, "Developing") ------------------------------------------------------------------
#: Each test has exactly one tier, cheapest first: ``bash scripts/test --fast`` runs only the first.
TIERS = ("inprocess", "daemon", "ecosystem")
#: What a fixture or marker says of the tier of a test that uses it: at least this one.
IMPLIED_TIER = {"start_daemon": "daemon", "demo_exposition": "daemon", "needs_root": "ecosystem"}
#: Programs of system packages (or of root), started by the tests of the ecosystem tier only.
SYSTEM_TOOLS = frozenset({
    "promtool", "prometheus", "prometheus-node-exporter", "chromium", "mtail", "systemd-analyze",
    "systemd-socket-activate", "hadolint", "jython", "podman", "unshare", "mount", "umount", "setpriv", "findmnt",
    "fusermount", "fusermount3",
})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite tests/golden/ from what the code renders now, instead of comparing with it")


def tier_of(item: pytest.Item) -> Optional[str]:
    """The highest of the tier markers on the test (function, class or module) and of what its fixtures and
    markers imply; None when nothing gives one."""
    named = {mark.name for mark in item.iter_markers()} | set(getattr(item, "fixturenames", ()))
    found = [TIERS.index(tier) for tier in TIERS if tier in named]
    found += [TIERS.index(tier) for name, tier in IMPLIED_TIER.items() if name in named]
    return TIERS[max(found)] if found else None


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by these markers
def pytest_collection_modifyitems(session: pytest.Session, items: List[pytest.Item]) -> None:
    """Every test gets exactly its one tier marker, so ``-m inprocess`` selects exactly that tier; a test
    without one fails the collection, so a new test cannot escape the tiers."""
    untiered = [item.nodeid for item in items if tier_of(item) is None]
    if untiered:
        raise pytest.UsageError("tests without a tier (mark them %s; see docs/architecture.md, \"Developing\"):\n  %s"
                                % (", ".join(TIERS), "\n  ".join(untiered)))
    tiers = {item.nodeid: tier_of(item) for item in items}
    for node in {node for item in items for node in item.listchain()}:
        node.own_markers[:] = [mark for mark in node.own_markers if mark.name not in TIERS]
    for item in items:
        item.add_marker(tiers[item.nodeid])


def tier_needed(argv: Sequence[str]) -> Optional[str]:
    """The tier a started program needs: ``daemon`` for the exporter (or the benchmark, which starts it),
    ``ecosystem`` for a system tool; None for anything else (the Royal Render worker, ``touch``)."""
    args = [word for arg in argv for word in arg.split()]  # a shell's command (``sh -c "mount ..."``) too
    names = {os.path.basename(arg) for arg in args}
    if names & SYSTEM_TOOLS:
        return "ecosystem"
    modules = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "-m"]
    if "renderfarm-exporter" in names or any(module in ("exporter", "bench") or module.startswith(
            ("exporter.__main__", "bench.")) for module in modules):
        return "daemon"
    return None


def command_line(command) -> List[str]:
    """A command as a list of words, whether given as one (shell) string or a sequence."""
    if isinstance(command, (str, bytes)):
        return shlex.split(os.fsdecode(command))
    return [os.fsdecode(word) if isinstance(word, (str, bytes)) else str(word) for word in command]


class TierGuard:
    """Fails a test that starts a program its tier does not allow (an audit hook sees every process started),
    so a test cannot sit in the ``inprocess`` tier while starting the exporter or a system tool."""

    def __init__(self) -> None:
        self.tier: Optional[str] = None
        self.seen: List[str] = []
        sys.addaudithook(self._audit)

    def _audit(self, event: str, args: tuple) -> None:
        if self.tier is None or event not in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.system"):
            return
        argv = command_line(args[0] if event == "os.system" else args[1] or ())
        program = [] if event == "os.system" or args[0] is None else [os.fsdecode(args[0])]
        needed = tier_needed(program + argv)
        if needed is not None and TIERS.index(needed) > TIERS.index(self.tier):
            said = "a test of the %s tier started %s, which needs the %s tier" % (self.tier, " ".join(argv), needed)
            self.seen.append(said)
            raise RuntimeError(said)


GUARD = TierGuard()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]):
    GUARD.tier, GUARD.seen = tier_of(item), []
    try:
        return (yield)
    finally:
        GUARD.tier = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """A phase that passed although the guard refused a program (the code under test caught the error) fails."""
    report = yield
    if GUARD.seen and report.passed:
        report.outcome, report.longrepr = "failed", "; ".join(GUARD.seen)
    if GUARD.seen:
        GUARD.seen = []  # said once, by the phase that started it
    return report


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``needs_root`` says so when it is not run as root, instead of failing obscurely."""
    if item.get_closest_marker("needs_root") is not None and os.geteuid() != 0:
        pytest.fail("needs root (mounts or namespaces), as CI has: run scripts/test as root", pytrace=False)


def install_plugin(name: str, target: str) -> str:
    """Installs the example plugin ``tests/plugins/NAME`` with the real pip into ``target``, a folder only the daemons
    given it on ``PYTHONPATH`` see (a plugin is installed, not imported from the tree); returns ``target``."""
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                "--no-deps", "--target", target, os.path.join(REPO, "tests", "plugins", name)],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return target


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
