"""Assembles the daemon: config -> readers -> runtime -> HTTP, and its life cycle.

Start-up binds the port first (a busy port fails before systemd hears
READY=1), then starts watching. SIGTERM and SIGINT stop it cleanly within
about a second; SIGHUP asks for a full rescan of every file.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Dict, Optional, Sequence

from exporter import sdnotify, statuspage
from exporter.config import Config
from exporter.httpserver import App, make_server
from exporter.logs import fields
from exporter.runtime import Runtime
from exporter.sources import Reader, registered_sources

log = logging.getLogger(__name__)


def build_readers(config: Config) -> Dict[str, Sequence[Reader]]:
    return {source.name: source.readers(config.sources[source.name]) for source in registered_sources()}


def render_once(config: Config, openmetrics: bool = False) -> bytes:
    """Reads every configured file once and returns the exposition (for ``--once``)."""
    runtime = Runtime(build_readers(config), config.watch)
    try:
        runtime.ingest_once()
        return runtime.cache.current.body(openmetrics, compressed=False)
    finally:
        runtime.close_readers()


def serve(config: Config, listen_address: str, telemetry_path: str, stop: Optional[threading.Event] = None) -> int:
    """Runs until SIGTERM/SIGINT (or ``stop`` is set); returns the exit code."""
    stop = stop or threading.Event()
    runtime = Runtime(build_readers(config), config.watch)
    app = App(telemetry_path, runtime.scraped, runtime.ready.is_set,
              lambda: statuspage.render(runtime.status(), runtime.cache.sections(), telemetry_path,
                                        runtime.ready.is_set()))
    server = make_server(listen_address, app)
    http_thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http",
                                   daemon=True)
    _install_signal_handlers(stop, runtime)
    runtime.start()
    http_thread.start()
    sdnotify.notify("READY=1")
    host, port = server.server_address[:2]
    log.info("listening", extra=fields(address="%s:%d" % (host, port), telemetry_path=telemetry_path))
    _supervise(stop, runtime, http_thread)
    log.info("shutting down")
    sdnotify.notify("STOPPING=1")
    server.shutdown()
    server.server_close()
    runtime.stop()
    return 0


def _install_signal_handlers(stop: threading.Event, runtime: Runtime) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: runtime.request_rescan())


def _supervise(stop: threading.Event, runtime: Runtime, http_thread: threading.Thread) -> None:
    """Pings the systemd watchdog only while the pipeline and HTTP threads are alive."""
    interval = sdnotify.watchdog_interval()
    tick = min(interval, 0.5) if interval else 0.5
    next_ping = 0.0
    elapsed = 0.0
    while not stop.wait(tick):
        elapsed += tick
        if interval is None or elapsed < next_ping:
            continue
        next_ping = elapsed + interval
        if runtime.alive() and http_thread.is_alive():
            sdnotify.notify("WATCHDOG=1")
        else:
            log.error("a pipeline thread died; withholding the systemd watchdog ping so systemd restarts us")
