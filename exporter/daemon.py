"""Serves the core (``exporter.core.Parts``: readers -> pipeline -> renderer) over HTTP, and its life cycle.

Start-up binds the port first (a busy port fails before systemd hears
READY=1), then starts watching. SIGTERM and SIGINT stop it cleanly within
about a second. SIGHUP (or ``POST /-/reload`` with ``--web.enable-lifecycle``)
reloads the configuration and the web config, then rescans every file.

Threads of the life cycle: the main thread only supervises and pings the
systemd watchdog; reloads and web config checks run on the *reload* thread,
so a slow reload (a reader to build, a bcrypt hash, a file share that hangs)
never delays a ping.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Dict, Optional, Sequence

from exporter import sdnotify
from exporter.checkpoint import CheckpointStore
from exporter.config import Config, ConfigError, load
from exporter.core import Parts, build_readers
from exporter.logs import fields
from exporter.pipeline import Pipeline
from exporter.sources import Reader, registered_sources
from exporter.statusboard import StatusBoard
from exporter.web import statuspage
from exporter.web.addresses import display_address
from exporter.web.httpserver import App, make_server
from exporter.web.webconfig import CHECK_INTERVAL, WebConfigFile

log = logging.getLogger(__name__)


class Reloader:
    """Re-reads the config file into the running pipeline; one reload at a time.

    Only sources whose section changed get new readers: the others keep
    theirs, and with them their counters and file offsets. An invalid file
    changes nothing and is reported, with every problem, to the caller.
    Each outcome, and each re-read of the web config file, goes on the
    status board.
    """

    def __init__(self, config_path: Optional[str], config: Config, pipeline: Pipeline, board: StatusBoard,
                 web: WebConfigFile):
        self._path = config_path
        self._config = config
        self._pipeline = pipeline
        self._board = board
        self.web = web
        self._lock = threading.Lock()
        board.config_loaded(time.time())
        board.web_config_read(web.status)
        web.on_change = self._web_changed

    def run(self, stop: threading.Event, requested: threading.Event) -> None:
        """The reload thread: a requested reload at once, else a look at the web config file every second."""
        while not stop.is_set():
            try:
                if requested.wait(CHECK_INTERVAL):
                    requested.clear()
                    sdnotify.notify("RELOADING=1\nMONOTONIC_USEC=%d" % (time.monotonic() * 1e6))
                    self.reload()
                    sdnotify.notify("READY=1")
                else:
                    self.web.refresh()
            except Exception:  # the thread must outlive any one failure
                log.exception("reload thread: unexpected failure; going on")

    def _web_changed(self) -> None:
        self._board.web_config_read(self.web.status)

    def reload(self) -> Optional[str]:
        """None when the new config runs, else why it was rejected."""
        with self._lock:
            self.web.refresh()
            try:
                if self._path:
                    self._apply(load(self._path))
                problem = None
            except ConfigError as exc:
                problem = str(exc)
            except Exception as exc:  # a reload must never take the daemon down
                log.exception("applying the new configuration failed")
                problem = "applying the new configuration failed: %s" % exc
            self._record(problem)
            self._pipeline.request_rescan()
            return problem

    def _apply(self, new: Config) -> None:
        running = self._pipeline.readers()
        changed = [source.name for source in registered_sources()
                   if new.sources[source.name] != self._config.sources[source.name]]
        readers: Dict[str, Sequence[Reader]] = {
            source.name: source.readers(new.sources[source.name]) if source.name in changed
            else running.get(source.name, ()) for source in registered_sources()}
        if changed or new.watch != self._config.watch:
            self._pipeline.reconfigure(readers, new.watch)
        self._config = new
        log.info("configuration reloaded", extra=fields(file=self._path, changed_sources=",".join(changed) or "none"))

    def _record(self, problem: Optional[str]) -> None:
        if problem is None:
            self._board.reload_succeeded(time.time())
        else:
            log.error("configuration reload failed; the previous configuration keeps running",
                      extra=fields(file=self._path, error=problem))
            self._board.reload_failed(time.time())


def serve(config: Config, listen_addresses: Sequence[str], telemetry_path: str,
          stop: Optional[threading.Event] = None, config_path: Optional[str] = None,
          web_config_file: Optional[str] = None, enable_lifecycle: bool = False, systemd_socket: bool = False,
          storage_path: str = "") -> int:
    """Runs until SIGTERM/SIGINT (or ``stop`` is set); returns the exit code.

    ``storage_path``: the folder of the readers' checkpoints ("" keeps none).

    An invalid ``web_config_file`` raises ConfigError before anything starts.
    """
    stop = stop or threading.Event()
    web = WebConfigFile(web_config_file)
    parts = Parts(build_readers(config), config.watch, CheckpointStore(storage_path) if storage_path else None)
    reloader = Reloader(config_path, config, parts.pipeline, parts.board, web)
    renderer = parts.renderer
    app = App(telemetry_path, renderer.exposition_for_scrape, renderer.is_ready,
              lambda query: statuspage.render(parts.status(), renderer.sections(), telemetry_path,
                                              renderer.is_ready(), config_path, query),
              web=web, reload=reloader.reload if enable_lifecycle else None)
    server = make_server(listen_addresses, app, systemd_socket)
    http_thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    reload_requested = threading.Event()
    reload_thread = threading.Thread(target=reloader.run, args=(stop, reload_requested), name="reload",
                                     daemon=True)
    _install_signal_handlers(stop, reload_requested)
    # Logged before the first request can be answered: the sockets are bound and listening already.
    for listener in server.listeners:
        log.info("listening", extra=fields(address=display_address(listener.getsockname()),
                                           telemetry_path=telemetry_path, systemd_socket=systemd_socket,
                                           tls=web.current().ssl_context is not None,
                                           basic_auth=web.current().auth is not None))
    parts.start()
    http_thread.start()
    reload_thread.start()
    sdnotify.notify("READY=1")
    _supervise(stop, parts, (http_thread, reload_thread))
    log.info("shutting down")
    sdnotify.notify("STOPPING=1")
    server.shutdown()
    server.server_close()
    parts.stop()
    return 0


def _install_signal_handlers(stop: threading.Event, reload_requested: threading.Event) -> None:
    """Handlers only set flags: the reload itself runs on the reload thread, never inside a handler."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload_requested.set())


def _supervise(stop: threading.Event, parts: Parts, threads: Sequence[threading.Thread]) -> None:
    """Pings the systemd watchdog, only while the pipeline and the HTTP and reload threads are alive.

    Nothing else runs here, so no reload or read can hold a ping back.
    """
    interval = sdnotify.watchdog_interval()
    if interval is None:
        while not stop.wait(1.0):  # a timeout keeps the main thread's signal handlers prompt
            pass
        return
    while True:
        if parts.alive() and all(thread.is_alive() for thread in threads):
            sdnotify.notify("WATCHDOG=1")
        else:
            log.error("a pipeline thread died; withholding the systemd watchdog ping so systemd restarts us")
        if stop.wait(interval):
            return
