"""The worker process: the only process that imports Royal Render's module.

The daemon starts it through ``launch.py`` (``python -I -S -u .../launch.py``)
with two private pipes, ``--request-fd`` and ``--reply-fd``, that only the
two processes hold. Standard input is /dev/null, and the vendor module's
stdout and stderr (banners, licence notes, load warnings, crashes) are
read by the daemon as *vendor output* and logged: nothing the module
prints or reads can touch the protocol.

One JSON object per line:

- hello (id 0): ``{"id": 0, "ok": true, "module": ..., "file": ..., "python": ...}``,
  or ``{"id": 0, "ok": false, "fatal": true, "error": ...}`` when no module imports;
- before each risky step of request N: ``{"id": N, "step": "..."}``, so the
  daemon can pin a crash or hang on it and list it in ``avoid`` from then on;
- the reply to request N: ``{"id": N, "ok": true, "data": ..., "member_failures": {...}}``
  or ``{"id": N, "ok": false, "error": ...}``.

Requests: ``{"id": N, "op": "extract" | "history" | "check_api" | "version",
"kind": ..., "path": ..., "options": {...}, "avoid": [...]}``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import sys
import threading
import time
import traceback
from typing import Any, Dict, List, Optional, TextIO

from exporter.royalrender.vendor import api, extractors, module
from exporter.royalrender.vendor.calls import Calls, LoadFailed, VendorError, describe

VERSION_STEP = "getRRModuleVersion()"
#: the protocol pipes are moved at least this high, out of reach of a module's stray writes to low descriptors
PROTOCOL_FD_FLOOR = 200


class Channel:
    """The reply pipe: one flushed JSON line per message."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def send(self, message: Dict[str, Any]) -> None:
        self._stream.write(json.dumps(message, default=str) + "\n")
        self._stream.flush()


def _limit_memory(limit: int) -> None:
    """An address-space limit, so a huge file fails its read (MemoryError or a crash), not the machine."""
    if limit > 0:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _high(fd: int) -> int:
    """``fd`` moved to a high number (the original closed)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, PROTOCOL_FD_FLOOR)
    os.close(fd)
    return moved


def _module_version(rr: Any, calls: Calls) -> Optional[str]:
    """``getRRModuleVersion()``: the reference says it needs a prior call on some builds, so it is risky."""
    if calls.avoided(VERSION_STEP):
        return None
    try:
        with calls.step(VERSION_STEP):
            return str(rr.getRRModuleVersion())
    except VendorError as exc:
        return "unknown (getRRModuleVersion raised %s)" % describe(exc)


def _keep_time_zone(zone: Optional[str]) -> None:
    """Undoes a module that changed ``TZ``: RR's local times are converted in the farm's zone."""
    if os.environ.get("TZ") != zone:
        if zone is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = zone
        time.tzset()


def _handle(rr: Any, request: Dict[str, Any], channel: Channel) -> Dict[str, Any]:
    request_id = request["id"]
    avoid = request.get("avoid", ())

    def announce(step: Optional[str]) -> None:
        channel.send({"id": request_id, "step": step})

    op = request.get("op", "extract")
    if op == "check_api":
        return {"data": api.check(Calls(rr, avoid, announce)), "member_failures": {}}
    if op == "version":
        return {"data": _module_version(rr, Calls(rr, avoid, announce)), "member_failures": {}}
    data, failures = extractors.run(rr, request["kind"], op, request["path"], request["options"], avoid, announce)
    return {"data": data, "member_failures": failures}


def serve(rr: Any, requests: TextIO, channel: Channel, zone: Optional[str]) -> None:
    for line in requests:
        request = json.loads(line)
        _keep_time_zone(zone)
        try:
            reply = dict(_handle(rr, request, channel), ok=True)
        except LoadFailed as exc:
            reply = {"ok": False, "error": str(exc)}
        except MemoryError:
            reply = {"ok": False, "error": "out of memory (royalrender.worker_memory_limit) while reading"}
        except VendorError:  # report, keep serving
            reply = {"ok": False, "error": traceback.format_exc(limit=5)}
        channel.send(dict(reply, id=request["id"]))


#: How often the worker checks that the exporter that started it still runs.
PARENT_CHECK_SECONDS = 1.0


def _exit_with_parent() -> None:
    """Ends this process once the exporter that started it is gone, even while the module hangs in a read.

    A hung read holds the main thread, and the exporter kills the worker only
    while it runs: an exporter killed (or stopped) meanwhile would leave the
    worker hanging for ever. A module stuck in C code that holds the GIL
    stops this thread too; systemd's control group still ends it.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _is_stdlib(entry: str) -> bool:
    """A ``sys.path`` entry of the interpreter's own standard library (under its base prefix, not site-packages)."""
    if not entry or not os.path.isabs(entry):
        return False
    parts = entry.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return any(entry == base or entry.startswith(base.rstrip(os.sep) + os.sep)
               for base in (sys.base_prefix, sys.base_exec_prefix) if base)


def _isolate(folders: List[str]) -> None:
    """``sys.path`` becomes the standard library, then the module's folders, and nothing else.

    No entry of the daemon's working folder, ``PYTHONPATH`` or site-packages is left to shadow the standard library
    or the vendor's module (``launch.py`` runs the worker with ``-I -S``; this holds however it was started). The
    standard library comes first: a stray ``json.py`` in RR's folder cannot replace it either. The exporter's own
    package is found through its ``__path__``, not ``sys.path``."""
    sys.path[:] = [entry for entry in sys.path if _is_stdlib(entry)] + list(dict.fromkeys(folders))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Royal Render module worker (started by the exporter)")
    parser.add_argument("--module", required=True)
    parser.add_argument("--module-path", action="append", default=[])
    parser.add_argument("--rr-root", help="RR's folder; without --module-path, its bin folders for this Python")
    parser.add_argument("--request-fd", type=int, required=True)
    parser.add_argument("--reply-fd", type=int, required=True)
    parser.add_argument("--memory-limit", type=int, default=0, help="address-space limit in bytes; 0: none")
    args = parser.parse_args(argv)
    _exit_with_parent()
    requests = os.fdopen(_high(args.request_fd), "r", encoding="utf-8")
    channel = Channel(os.fdopen(_high(args.reply_fd), "w", encoding="utf-8"))
    _limit_memory(args.memory_limit)
    zone = os.environ.get("TZ")
    folders = args.module_path or module.default_module_paths(args.rr_root)
    _isolate(folders)
    try:
        rr = module.load(args.module, folders)
    except module.ModuleLoadError as exc:
        channel.send({"id": 0, "ok": False, "fatal": True, "error": str(exc)})
        return 3
    channel.send({"id": 0, "ok": True, "module": rr.__name__, "file": getattr(rr, "__file__", None),
                  "python": "%s (%s)" % (platform.python_version(), sys.executable)})
    serve(rr, requests, channel, zone)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
