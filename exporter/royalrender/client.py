"""The daemon's side of the Royal Render boundary: one worker process, spoken to over private pipes.

The vendor module runs only in the worker (``exporter.royalrender.vendor.worker``):

- requests and replies travel on two pipes passed at spawn, never on the
  worker's stdout, so a module that prints cannot shift or forge a reply;
  every reply must carry the id of its request, and any other line fails
  the call and restarts the worker;
- what the module prints (stdout and stderr) is logged, rate-limited, and
  kept for ``rr-probe``;
- a read that crashes the worker, hangs past ``read_timeout`` or breaks the
  protocol raises ``WorkerCrashed``; the worker is started afresh for the
  next read at once, so one bad file never takes the others down (the
  reader backs that one file off);
- a crash or hang inside a *risky step* the worker announced (a call
  outside the documented contract) is remembered: the step is sent in
  ``avoid`` with every later request and never made again;
- the worker runs under ``royalrender.python`` in isolated mode (``-I -S``:
  no working folder, ``PYTHONPATH`` or site-packages on its ``sys.path``),
  in ``royalrender.timezone`` (``TZ``), with the module's folders on
  ``LD_LIBRARY_PATH`` and an address-space limit;
- a worker that does not come up is explained: when its interpreter is
  missing, does not run or is older than 3.7, the start fails with that
  (``royalrender.python: ... is Python 2.7.3; the worker needs 3.7 ...``),
  not with "failed while importing".
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Deque, Dict, List, NoReturn, Optional, Tuple

from exporter.logs import RateLimitedLog, fields
from exporter.royalrender import descendants, interpreter
from exporter.royalrender.timezone import Timezone
from exporter.royalrender.vendor import module
from exporter.wholefile import MAX_REASON_CHARS

log = logging.getLogger(__name__)

START_BACKOFF_SECONDS = 1.0
START_BACKOFF_MAX_SECONDS = 60.0
START_TIMEOUT_SECONDS = 30.0
VENDOR_OUTPUT_KEPT = 200
EXIT_CHECK_SECONDS = 0.25  # how often a worker that sends nothing is checked for having exited
VENDOR_LINE_BYTES = 4096  # longer lines of vendor output are cut
LARGEST_REPLY_BYTES = 512 << 20  # a reply line past this is a protocol error (the largest real ones: tens of MB)
#: the worker's entry point, run as a script: it loads the ``exporter`` package from its own folder, so the
#: worker's interpreter needs no copy of it installed and nothing on ``sys.path`` but the standard library
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(module.__file__)), "launch.py")
#: isolated (no working folder, PYTHONPATH or user site), no site-packages, unbuffered output (Python 3.4+)
INTERPRETER_FLAGS = ("-I", "-S", "-u")


class WorkerError(Exception):
    """A read failed: the vendor's error text, or the worker could not be started."""


def _bounded(cause: str) -> str:
    """``cause`` within a file's error length: its start (what failed) and its end (the advice) kept."""
    if len(cause) <= MAX_REASON_CHARS:
        return cause
    keep = MAX_REASON_CHARS - 100
    head, tail = cause[:keep * 3 // 4], cause[-(keep // 4):]
    return "%s [... %d characters cut ...] %s" % (head, len(cause) - len(head) - len(tail), tail)


_LONG_NUMBER = re.compile(r"\d{3,}")


def _same_cause(cause: str, previous: str) -> bool:
    """Texts that differ only in numbers of three digits or more (a PID, a temporary file's name, an address) say
    the same cause; a version (``Python 2.7.18`` then ``3.6.9``: the interpreter replaced in place) is news."""
    return _LONG_NUMBER.sub("#", cause) == _LONG_NUMBER.sub("#", previous)


class WorkerStartFailed(WorkerError):
    """The worker did not come up: its interpreter is missing, does not run or is too old (the message says which,
    and names ``royalrender.python``), or the worker died or hung while importing the module."""


class ModuleNotLoaded(WorkerStartFailed):
    """The worker started but could not import the vendor's module; the message says what it tried."""


class WorkerCrashed(WorkerError):
    """The worker crashed, hung or broke the protocol; it was killed and the next call starts a new one.

    ``step`` is the risky step it was in, if any: then the step is to blame
    (and is avoided from now on), not the file. ``timed_out``: it hung past
    ``read_timeout`` (else it crashed or broke the protocol).
    """

    def __init__(self, message: str, step: Optional[str] = None, timed_out: bool = False):
        super().__init__(message)
        self.step = step
        self.timed_out = timed_out


@dataclass(frozen=True)
class WorkerSettings:
    module: str
    module_paths: Tuple[str, ...]  # configured folders; empty: the worker's defaults under root
    root: Optional[str]
    python: str
    timezone: Timezone
    timeout: float
    memory_limit: int  # bytes of address space; 0: no limit


@dataclass(frozen=True)
class Reply:
    data: Any
    member_failures: Dict[str, str]


class WorkerClient:
    """Talks to one worker process at a time; starts a new one whenever the last one failed."""

    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self.restarts = 0
        self.module_info: Dict[str, Any] = {}
        self.avoided: Dict[str, str] = {}  # risky step -> what it did
        self.vendor_output: Deque[str] = collections.deque(maxlen=VENDOR_OUTPUT_KEPT)
        self._proc: Optional[subprocess.Popen] = None
        self._requests: Optional[IO[bytes]] = None
        self._replies = -1
        self._poller = select.poll()
        self._buffer = bytearray()
        self._start_backoff = START_BACKOFF_SECONDS
        self._start_not_before = 0.0
        #: Why the last start failed ("" once one succeeded): the cause each read meanwhile fails with, the
        #: status page's and the metrics' reason; never a countdown, which would hide it.
        self.start_failure = ""
        self._output_log = RateLimitedLog(log)
        self._drain: Optional[threading.Thread] = None
        self._token = secrets.token_hex(8)  # marks every process the worker starts (``descendants``)

    def read(self, kind: str, path: str, options: Dict[str, Any]) -> Reply:
        """Plain data extracted from one file, and the members that failed; raises WorkerError."""
        return self._call({"op": "extract", "kind": kind, "path": path, "options": options}, "reading " + path)

    def history(self, kind: str, path: str, options: Dict[str, Any]) -> Reply:
        """Every slot one file holds, for backfill; raises WorkerError."""
        return self._call({"op": "history", "kind": kind, "path": path, "options": options}, "reading " + path)

    def check_api(self) -> Dict[str, Any]:
        """Which documented classes and members the loaded module has (for rr-probe)."""
        return self._call({"op": "check_api"}, "checking the module's API").data

    def module_version(self) -> Optional[str]:
        """``getRRModuleVersion()``, asked once per module (a risky step: it may need a prior call)."""
        if "version" not in self.module_info:
            self.module_info["version"] = self._call({"op": "version"}, "asking the module's version").data
        return self.module_info["version"]

    def close(self) -> None:
        """Stops the worker and waits briefly for the last of its output."""
        self._kill()
        if self._drain is not None:
            self._drain.join(timeout=2.0)

    # -- one call ----------------------------------------------------------------------------

    def _call(self, request: Dict[str, Any], doing: str) -> Reply:
        self._ensure_running()
        if self._buffer:
            self._crashed("protocol error before %s: the worker wrote more than its last reply" % doing, None)
        request_id = secrets.randbelow(1 << 62) + 1  # unguessable, so a stray or forged line cannot pass as a reply
        request = dict(request, id=request_id, avoid=sorted(self.avoided))
        assert self._requests is not None  # _ensure_running() has started the worker
        try:
            self._requests.write((json.dumps(request) + "\n").encode())
            self._requests.flush()
        except OSError as exc:
            self._crashed("worker pipe broken %s: %s" % (doing, exc), None)
        reply = self._await_reply(request_id, self.settings.timeout, doing)
        if not reply.get("ok"):
            raise WorkerError(str(reply.get("error", "unknown error")))
        return Reply(reply.get("data"), dict(reply.get("member_failures") or {}))

    def _await_reply(self, request_id: int, timeout: float, doing: str) -> Dict[str, Any]:
        """The reply to ``request_id``, noting the risky step the worker is in (None: in none)."""
        step: Optional[str] = None
        deadline = time.monotonic() + timeout
        while True:
            message = self._message(deadline, doing, step, timeout)
            if not isinstance(message, dict) or message.get("id") != request_id:
                self._crashed("protocol error %s: expected the reply to request %d, got %.200r"
                              % (doing, request_id, message), None)
            if "step" not in message:
                return message
            step = None if message["step"] is None else str(message["step"])

    def _message(self, deadline: float, doing: str, step: Optional[str], timeout: float) -> Any:
        """The next line from the reply pipe, parsed; the buffer is searched only where new bytes arrived."""
        searched = 0
        end = self._buffer.find(b"\n")
        while end < 0:
            if len(self._buffer) > LARGEST_REPLY_BYTES:
                self._crashed("protocol error %s: a reply line over %d bytes" % (doing, LARGEST_REPLY_BYTES), None)
            left = deadline - time.monotonic()
            if left <= 0:
                self._crashed("worker timed out after %.0f s %s" % (timeout, doing), step, timed_out=True)
            # in slices: a child the module forked may hold the pipe open after the worker died
            ready = self._poller.poll(1000 * min(left, EXIT_CHECK_SECONDS))
            if not ready and self._proc is not None and self._proc.poll() is not None:
                self._crashed("worker crashed (exit code %s) %s" % (self._proc.returncode, doing), step)
            if ready:
                chunk = os.read(self._replies, 1 << 20)
                if not chunk:
                    self._crashed("worker crashed (exit code %s) %s" % (self._exit_code(), doing), step)
                searched = len(self._buffer)
                self._buffer += chunk
                end = self._buffer.find(b"\n", searched)
        line = bytes(self._buffer[:end])
        del self._buffer[:end + 1]
        try:
            return json.loads(line)
        except ValueError:
            self._crashed("protocol error %s: not a JSON line: %.200r" % (doing, line), None)

    def _crashed(self, message: str, step: Optional[str], timed_out: bool = False) -> NoReturn:
        self._kill()
        self.restarts += 1
        if step is not None:
            self.avoided[step] = message
            log.error("Royal Render module crashed or hung in a call outside the documented contract; "
                      "that call is skipped from now on", extra=fields(call=step, reason=message))
            message = "%s, in %s (skipped from now on)" % (message, step)
        else:
            log.warning("Royal Render worker failed; the next read starts a new one", extra=fields(reason=message))
        raise WorkerCrashed(message, step, timed_out)

    # -- the process -------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._kill()
        wait = self._start_not_before - time.monotonic()
        if wait > 0:
            raise WorkerStartFailed(self.start_failure)
        self._spawn()
        try:
            hello = self._await_reply(0, max(self.settings.timeout, START_TIMEOUT_SECONDS), "starting the worker")
        except WorkerCrashed as exc:
            raise self._start_failed(WorkerStartFailed(
                self._interpreter_problem() or "the worker failed while importing the module (a crash, a hang, or "
                                               "a stray write to its reply pipe): %s" % exc)) from None
        if not hello.get("ok"):
            self._kill()
            raise self._start_failed(ModuleNotLoaded(str(hello.get("error"))))
        self._start_backoff = START_BACKOFF_SECONDS
        self.start_failure = ""
        version = self.module_info.get("version")
        self.module_info = dict(hello, **({"version": version} if version is not None else {}))
        log.info("Royal Render worker started", extra=fields(module=hello.get("module"), file=hello.get("file"),
                                                               python=hello.get("python"),
                                                               timezone=self.settings.timezone.name))

    def _exit_code(self) -> Optional[int]:
        """The worker's exit code once its reply pipe closed; None if it lingers (it is killed next)."""
        try:
            return self._proc.wait(timeout=1.0) if self._proc else None
        except subprocess.TimeoutExpired:
            return None

    def _start_failed(self, failure: WorkerStartFailed) -> WorkerStartFailed:
        """Backs the next start off and remembers why, for the reads that fail meanwhile: the cause as a label, a
        file's error and the page's summary show it, bounded; a retry whose text differs only by numbers (a PID, a
        temporary file's name) is the same cause, kept as first said, so it is neither a new incident nor news."""
        self._start_not_before = time.monotonic() + self._start_backoff
        text = _bounded(str(failure))
        if _same_cause(text, self.start_failure):
            text = self.start_failure
        else:  # each distinct cause once, not each try
            log.error("Royal Render worker cannot start; its files are down until it does (tried again with a "
                      "growing pause)", extra=fields(reason=text, retry_in_seconds=self._start_backoff))
        if text != str(failure):
            failure = type(failure)(text)
        self._start_backoff = min(self._start_backoff * 2, START_BACKOFF_MAX_SECONDS)
        self.start_failure = text
        return failure

    def _interpreter_problem(self) -> Optional[str]:
        """After a failed start: ``royalrender.python: ...`` when the interpreter is to blame (missing, not running,
        older than 3.7: it cannot even parse the worker), else None. Asked only then, so a start costs nothing."""
        s = self.settings
        installed = module.installed_versions(module.library_folders(s.root, s.module_paths))
        return interpreter.start_problem(s.python, worker_environment(s), installed)

    def _command(self, request_fd: int, reply_fd: int) -> List[str]:
        s = self.settings
        command = [s.python, *INTERPRETER_FLAGS, LAUNCHER, "--module", s.module,
                   "--request-fd", str(request_fd), "--reply-fd", str(reply_fd), "--memory-limit", str(s.memory_limit)]
        for path in s.module_paths:
            command += ["--module-path", path]
        return command + (["--rr-root", s.root] if s.root else [])

    def _spawn(self) -> None:
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        try:
            self._proc = subprocess.Popen(
                self._command(request_read, reply_write), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, pass_fds=(request_read, reply_write),
                env=dict(worker_environment(self.settings), **{descendants.MARK: self._token}),
                start_new_session=True)  # its own process group: children the module forks are killed with it
        except OSError as exc:
            for fd in (request_write, reply_read):  # the worker's ends are closed below
                os.close(fd)
            raise self._start_failed(WorkerStartFailed(
                self._interpreter_problem() or "cannot start the worker with %s: %s" % (self.settings.python, exc)
            )) from None
        finally:
            for fd in (request_read, reply_write):
                _close_quietly(fd)
        self._requests = os.fdopen(request_write, "wb")
        self._replies, self._buffer = reply_read, bytearray()
        self._poller = select.poll()  # not select(): the daemon may hold descriptors above 1023
        self._poller.register(reply_read, select.POLLIN)
        self._drain = threading.Thread(target=self._drain_output, args=(self._proc,), name="rr-vendor-output",
                                       daemon=True)
        self._drain.start()

    def _drain_output(self, proc: subprocess.Popen) -> None:
        """Logs what the vendor module prints (rate-limited) and keeps the latest lines, cut short, for rr-probe."""
        stream = proc.stdout
        assert stream is not None  # started with stdout=PIPE
        cut = False
        try:
            for raw in iter(lambda: stream.readline(VENDOR_LINE_BYTES), b""):
                complete = raw.endswith(b"\n")
                if not cut:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n") + ("" if complete else " [cut]")
                    self.vendor_output.append(line)
                    self._output_log.warning("vendor-output", "Royal Render module printed", line=line[:500],
                                             pid=proc.pid)
                cut = not complete
        except (OSError, ValueError):
            pass
        finally:
            stream.close()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if self._requests is not None:
            try:
                self._requests.close()
            except OSError:
                pass
            self._requests = None
        if self._replies >= 0:
            _close_quietly(self._replies)
            self._replies = -1
        if proc is None:
            return
        started = descendants.descendants(proc.pid, self._token)  # found while the worker still lives
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker and anything the module forked
        except OSError:
            pass
        proc.wait()
        # and what left the group (setsid) or lost its parent meanwhile: it would hold the output pipe open
        descendants.kill(started | descendants.marked(self._token))  # not by the reaped pid: it may be reused


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def worker_environment(settings: WorkerSettings) -> Dict[str, str]:
    """The worker's environment: the daemon's, with the module's folders on ``LD_LIBRARY_PATH`` (a vendor module may
    need sibling libraries) and ``TZ`` set to the farm's zone. ``PYTHON*`` variables do not reach it (``-I``)."""
    env = dict(os.environ)
    libraries = module.library_folders(settings.root, settings.module_paths)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, libraries + [env.get("LD_LIBRARY_PATH", "")]))
    env.update(settings.timezone.environment())
    return env


def default_python() -> str:
    """The interpreter that runs the daemon: the worker's unless ``royalrender.python`` says otherwise."""
    return sys.executable
