"""All calls into Royal Render's module happen in this worker process.

The vendor module is a C++ extension: a corrupt file can crash or hang it,
and a long load holds the GIL. So the daemon never imports it; it sends one
JSON line per request to this process (``python -m
exporter.royalrender.worker``) and gets plain data back, one JSON line per
reply. No vendor object crosses the boundary.

``WorkerClient`` is the daemon's side: a timeout per read, and a crashed or
hung worker is killed and started again with exponential backoff.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import subprocess
import sys
import time
import traceback
from typing import Any, Dict, List, Optional, Sequence

from exporter.logs import fields

log = logging.getLogger(__name__)

BACKOFF_START_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0


class WorkerError(Exception):
    """A read failed; the message is the vendor's error, a crash, or a timeout."""


# -- worker side ---------------------------------------------------------------------------


def _serve(module_spec: str, module_paths: Sequence[str]) -> int:
    from exporter.royalrender import api, kinds, module
    from exporter.royalrender.access import LoadFailed

    out = sys.stdout
    try:
        rr = module.load(module_spec, module_paths)
    except module.ModuleLoadError as exc:
        out.write(json.dumps({"ok": False, "fatal": True, "error": str(exc)}) + "\n")
        out.flush()
        return 3
    out.write(json.dumps({"ok": True, "module": rr.__name__, "file": getattr(rr, "__file__", None),
                          "version": _module_version(rr)}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request.get("op") == "check_api":
                data = api.check(rr)
            else:
                extract = kinds.extractor(request["kind"], request.get("op", "extract"))
                data = extract(rr, request["path"], request["options"])
            reply = {"id": request["id"], "ok": True, "data": data}
        except LoadFailed as exc:
            reply = {"id": request["id"], "ok": False, "error": str(exc)}
        except Exception:  # noqa: BLE001 - report, keep serving
            reply = {"id": request["id"], "ok": False, "error": traceback.format_exc(limit=5)}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


def _module_version(rr) -> Optional[str]:
    try:
        return str(rr.getRRModuleVersion())
    except Exception:  # noqa: BLE001 - the vendor documents it needs a prior call on some builds
        return None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Royal Render module worker (started by the exporter)")
    parser.add_argument("--module", required=True)
    parser.add_argument("--module-path", action="append", default=[])
    args = parser.parse_args(argv)
    return _serve(args.module, args.module_path)


# -- daemon side ---------------------------------------------------------------------------


class WorkerClient:
    """Talks to one worker process; restarts it after a crash or a timeout."""

    def __init__(self, module_spec: str, module_paths: Sequence[str], timeout: float):
        self._command = [sys.executable, "-m", "exporter.royalrender.worker", "--module", module_spec]
        for path in module_paths:
            self._command += ["--module-path", path]
        self._timeout = timeout
        self._proc: Optional[subprocess.Popen] = None
        self._buffer = b""
        self._next_id = 0
        self._backoff = BACKOFF_START_SECONDS
        self._not_before = 0.0
        self.restarts = 0
        self.module_info: Dict[str, Any] = {}

    def read(self, kind: str, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
        """Plain data extracted from one file; raises WorkerError."""
        return self._call({"kind": kind, "path": path, "options": options}, "reading %s" % path)

    def history(self, kind: str, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
        """Every slot one file holds, for backfill; raises WorkerError."""
        return self._call({"op": "history", "kind": kind, "path": path, "options": options}, "reading %s" % path)

    def check_api(self) -> Dict[str, Any]:
        """Which documented classes and members the loaded module has (for rr-probe)."""
        return self._call({"op": "check_api"}, "checking the module's API")

    def _call(self, request: Dict[str, Any], doing: str) -> Dict[str, Any]:
        self._ensure_running()
        self._next_id += 1
        request = dict(request, id=self._next_id)
        try:
            self._proc.stdin.write((json.dumps(request) + "\n").encode())
            self._proc.stdin.flush()
        except OSError as exc:
            self._fail("worker pipe broken: %s" % exc)
        reply = self._reply(self._timeout, doing)
        if not reply.get("ok"):
            raise WorkerError(reply.get("error", "unknown error"))
        self._backoff = BACKOFF_START_SECONDS
        return reply["data"]

    def close(self) -> None:
        if self._proc is not None:
            self._kill()

    def _ensure_running(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        if self._proc is not None:
            self._fail("worker exited with code %s" % self._proc.returncode)
        wait = self._not_before - time.monotonic()
        if wait > 0:
            raise WorkerError("worker restarting after a failure; next try in %.0f s" % wait)
        self._proc = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=None, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self._buffer = b""
        hello = self._reply(max(self._timeout, 30.0), "starting the worker")
        if hello.get("fatal"):
            self._kill()
            self._schedule_restart()
            raise WorkerError(hello["error"])
        self.module_info = hello
        log.info("Royal Render worker started", extra=fields(module=hello.get("module"), file=hello.get("file"),
                                                               version=hello.get("version")))

    def _reply(self, timeout: float, doing: str) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail("worker timed out after %.0f s %s" % (timeout, doing))
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    self._proc.wait()
                    self._fail("worker crashed (exit code %s) %s" % (self._proc.returncode, doing))
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def _fail(self, message: str) -> None:
        self._kill()
        self.restarts += 1
        self._schedule_restart()
        log.warning("Royal Render worker failed; restarting it", extra=fields(reason=message))
        raise WorkerError(message)

    def _schedule_restart(self) -> None:
        self._not_before = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_SECONDS)

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


if __name__ == "__main__":
    raise SystemExit(main())
