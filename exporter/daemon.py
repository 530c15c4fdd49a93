"""Assembles the daemon: config -> readers -> runtime -> HTTP, and its life cycle.

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

import dataclasses
import logging
import signal
import threading
import time
from typing import Dict, Optional, Sequence

from exporter import sdnotify
from exporter.config import Config, ConfigError, load
from exporter.logs import fields
from exporter.runtime import Runtime
from exporter.sources import Reader, registered_sources
from exporter.status import ReloadStatus
from exporter.web import statuspage
from exporter.web.httpserver import App, display_address, make_server
from exporter.web.webconfig import CHECK_INTERVAL, WebConfigFile

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


class Reloader:
    """Re-reads the config file into the running runtime; one reload at a time.

    Only sources whose section changed get new readers: the others keep
    theirs, and with them their counters and file offsets. An invalid file
    changes nothing and is reported, with every problem, to the caller.
    """

    def __init__(self, config_path: Optional[str], config: Config, runtime: Runtime, web: WebConfigFile):
        self._path = config_path
        self._config = config
        self._runtime = runtime
        self.web = web
        self._lock = threading.Lock()
        runtime.reload_status = ReloadStatus(last_success_time=time.time())
        runtime.web_reload_status = web.status
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
        self._runtime.web_reload_status = self.web.status
        self._runtime.status_changed()

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
            self._runtime.request_rescan()
            return problem

    def _apply(self, new: Config) -> None:
        running = self._runtime.readers()
        changed = [source.name for source in registered_sources()
                   if new.sources[source.name] != self._config.sources[source.name]]
        readers: Dict[str, Sequence[Reader]] = {
            source.name: source.readers(new.sources[source.name]) if source.name in changed
            else running.get(source.name, ()) for source in registered_sources()}
        if changed or new.watch != self._config.watch:
            self._runtime.reconfigure(readers, new.watch)
        self._config = new
        log.info("configuration reloaded", extra=fields(file=self._path, changed_sources=",".join(changed) or "none"))

    def _record(self, problem: Optional[str]) -> None:
        now = time.time()
        before = self._runtime.reload_status
        if problem is None:
            status = dataclasses.replace(before, successful=True, last_attempt_time=now, last_success_time=now,
                                         successes=before.successes + 1)
        else:
            log.error("configuration reload failed; the previous configuration keeps running",
                      extra=fields(file=self._path, error=problem))
            status = dataclasses.replace(before, successful=False, last_attempt_time=now,
                                         failures=before.failures + 1)
        self._runtime.reload_status = status
        self._runtime.status_changed()


def serve(config: Config, listen_addresses: Sequence[str], telemetry_path: str,
          stop: Optional[threading.Event] = None, config_path: Optional[str] = None,
          web_config_file: Optional[str] = None, enable_lifecycle: bool = False, systemd_socket: bool = False) -> int:
    """Runs until SIGTERM/SIGINT (or ``stop`` is set); returns the exit code.

    An invalid ``web_config_file`` raises ConfigError before anything starts.
    """
    stop = stop or threading.Event()
    web = WebConfigFile(web_config_file)
    runtime = Runtime(build_readers(config), config.watch)
    reloader = Reloader(config_path, config, runtime, web)
    app = App(telemetry_path, runtime.scraped, runtime.ready.is_set,
              lambda query: statuspage.render(runtime.status(), runtime.cache.sections(), telemetry_path,
                                              runtime.ready.is_set(), config_path, query),
              web=web, reload=reloader.reload if enable_lifecycle else None)
    server = make_server(listen_addresses, app, systemd_socket)
    http_thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    reload_requested = threading.Event()
    reload_thread = threading.Thread(target=reloader.run, args=(stop, reload_requested), name="reload",
                                     daemon=True)
    _install_signal_handlers(stop, reload_requested)
    runtime.start()
    http_thread.start()
    reload_thread.start()
    sdnotify.notify("READY=1")
    for listener in server.listeners:
        log.info("listening", extra=fields(address=display_address(listener.getsockname()),
                                           telemetry_path=telemetry_path, systemd_socket=systemd_socket,
                                           tls=web.current().ssl_context is not None,
                                           basic_auth=web.current().auth is not None))
    _supervise(stop, runtime, (http_thread, reload_thread))
    log.info("shutting down")
    sdnotify.notify("STOPPING=1")
    server.shutdown()
    server.server_close()
    runtime.stop()
    return 0


def _install_signal_handlers(stop: threading.Event, reload_requested: threading.Event) -> None:
    """Handlers only set flags: the reload itself runs on the reload thread, never inside a handler."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload_requested.set())


def _supervise(stop: threading.Event, runtime: Runtime, threads: Sequence[threading.Thread]) -> None:
    """Pings the systemd watchdog, only while the pipeline and the HTTP and reload threads are alive.

    Nothing else runs here, so no reload or read can hold a ping back.
    """
    interval = sdnotify.watchdog_interval()
    if interval is None:
        while not stop.wait(1.0):  # a timeout keeps the main thread's signal handlers prompt
            pass
        return
    while True:
        if runtime.alive() and all(thread.is_alive() for thread in threads):
            sdnotify.notify("WATCHDOG=1")
        else:
            log.error("a pipeline thread died; withholding the systemd watchdog ping so systemd restarts us")
        if stop.wait(interval):
            return
