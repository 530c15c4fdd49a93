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
from typing import Dict, List, Optional, Sequence, Tuple

from exporter import sdnotify
from exporter.attempts import Attempt
from exporter.boundedfile import stuck_reads
from exporter.checkpoint import CheckpointStore
from exporter.config import Config, ConfigError, load, log_notices, notices
from exporter.core import Parts, build_readers
from exporter.logs import fields
from exporter.pipeline import Pipeline
from exporter.sandbox import NONE as NO_SANDBOX
from exporter.sandbox import Sandbox
from exporter.sources import Reader, registered_sources
from exporter.status import ReloadOutcome
from exporter.statusboard import StatusBoard
from exporter.web import statuspage
from exporter.web.addresses import display_address
from exporter.web.httpserver import App, make_server
from exporter.web.webconfig import CHECK_INTERVAL, WebConfigFile

log = logging.getLogger(__name__)

WEB_CHECK = "web config check"


#: Longest a reload (or a look at the web config file) may run before it is abandoned and reported. One file
#: read gives up after ``config.READ_TIMEOUT`` (5 s), so only something else that hangs (a ``stat`` on a hung
#: share, building readers) reaches this.
RELOAD_DEADLINE = 30.0


class Reloader:
    """Re-reads the config file into the running pipeline; one reload at a time.

    Only sources whose section changed get new readers: the others keep
    theirs, and with them their counters and file offsets. An invalid file
    changes nothing and is reported, with every problem, to the caller.
    Each outcome, and each re-read of the web config file, goes on the
    status board.

    Each reload, and each look at the web config file, is an ``Attempt`` on
    a thread of its own, given up on after ``deadline`` seconds: reported
    (log, status board, the failure counter) while the reload thread goes
    on, so the next SIGHUP or ``POST /-/reload`` is served. ``health`` says
    what is stuck meanwhile.
    """

    def __init__(self, config_path: Optional[str], config: Config, pipeline: Pipeline, board: StatusBoard,
                 web: WebConfigFile, deadline: float = RELOAD_DEADLINE, sandbox: Sandbox = NO_SANDBOX,
                 config_notices: Tuple[str, ...] = ()):
        self._path = config_path
        self._sandbox = sandbox
        self._notices = config_notices  # of the configuration in force (``config.notices``, as texts)
        self._config = config
        self._pipeline = pipeline
        self._board = board
        self.web = web
        self.deadline = deadline
        self._dispatch = threading.Lock()  # one reload waited for at a time (SIGHUP and POST /-/reload)
        self._applying = threading.Lock()  # held while a new configuration is swapped in
        self._attempts: List[Attempt] = []  # started and not ended (abandoned ones stay until they end)
        self._attempts_lock = threading.Lock()
        board.config_loaded(time.time(), config_notices)
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
                    self.check_web_config()
            except Exception:  # the thread must outlive any one failure
                log.exception("reload thread: unexpected failure; going on")

    def _web_changed(self) -> None:
        self._board.web_config_read(self.web.status)

    # -- attempts ---------------------------------------------------------------

    def _start(self, what: str, work) -> Attempt:
        attempt = Attempt(what, work, on_end=self._ended)
        with self._attempts_lock:
            self._attempts.append(attempt)
        return attempt.start()

    def _ended(self, attempt: Attempt) -> None:
        with self._attempts_lock:
            self._attempts.remove(attempt)
        if attempt.abandoned:
            log.warning("an abandoned attempt ended", extra=fields(what=attempt.what, seconds=round(attempt.age(), 1),
                                                                   outcome=attempt.outcome or "success"))
            self._board.reload_stuck(self._stuck_text())

    def _stuck(self) -> List[Attempt]:
        """Attempts running past the deadline (abandoned, or about to be)."""
        with self._attempts_lock:
            return [a for a in self._attempts if a.running and (a.abandoned or a.age() > self.deadline)]

    def _stuck_text(self) -> str:
        return "; ".join("%s running for %.0f s, still %s" % (a.what, a.age(), a.step) for a in self._stuck())

    def health(self) -> Optional[str]:
        """Why the daemon cannot reload as it should now (for ``/-/healthy``), or None: a reload or web config
        check running past the deadline, or a read of the config or web config file abandoned at its deadline
        that has not returned (a hung share)."""
        reasons = ["%s running for %.0f s, still %s" % (a.what, a.age(), a.step) for a in self._stuck()]
        paths = ((self._path,) if self._path else ()) + tuple(self.web.current().files)
        reasons += ["a read of %s abandoned %.0f s ago has not returned (a hung share?)" % (path, seconds)
                    for path, seconds in stuck_reads(paths)]
        return "; ".join(reasons) or None

    def security_stuck(self) -> bool:
        """Whether changes of the web config (TLS, users) cannot be applied now: a look at it is stuck past the
        deadline, or a read of it (or of a file it names) is stuck. The systemd watchdog is then not fed."""
        return any(a.what == WEB_CHECK for a in self._stuck()) or bool(self.web.stuck_reads())

    def check_web_config(self) -> None:
        """The look at the web config file every second, as an attempt: a ``stat`` or read that hangs is given up
        on at the deadline (counted as refused, logged, the previous settings kept) instead of holding the
        reload thread; no other look starts while it hangs."""
        if not self.web.path:
            return
        with self._attempts_lock:
            if any(a.what == WEB_CHECK for a in self._attempts):
                return
        attempt = self._start(WEB_CHECK, lambda attempt: self.web.refresh())
        problem = attempt.wait(self.deadline)
        if attempt.abandoned and problem is not None:
            self.web.abandoned(problem)
            self._board.reload_stuck(self._stuck_text())

    # -- reloads ----------------------------------------------------------------

    def reload(self) -> ReloadOutcome:
        """Whether the new config runs (``problem`` None) or why it was rejected (or that it was abandoned), and
        what in the configuration now running will not work (``notices``, as ``--check-config`` says them)."""
        problem: Optional[str]
        if not self._dispatch.acquire(timeout=self.deadline):
            problem = "another reload has been running for more than %g s" % self.deadline
            self._record(problem)
            return ReloadOutcome(problem, self._notices)
        try:
            attempt = self._start("configuration reload", self._attempt_reload)
            problem = attempt.wait(self.deadline)
            self._record(problem)
            if attempt.abandoned:
                self._board.reload_stuck(self._stuck_text())
            self._pipeline.request_rescan()
            return ReloadOutcome(problem, self._notices)
        finally:
            self._dispatch.release()

    def _attempt_reload(self, attempt: Attempt) -> Optional[str]:
        """One reload, on its attempt's thread."""
        attempt.step = "re-reading the web config file"
        self.web.refresh()
        if not self._path:
            return None
        attempt.step = "reading %s" % self._path
        try:
            new = load(self._path)
        except ConfigError as exc:
            return str(exc)
        attempt.step = "checking what in %s will not work" % self._path
        found = notices(new, self._sandbox)
        attempt.step = "waiting for an earlier reload to finish applying its configuration"
        if not self._applying.acquire(timeout=max(0.0, self.deadline - attempt.age())):
            return "an earlier reload is still applying its configuration"
        try:
            if attempt.given_up():
                return "abandoned before it was applied: nothing changed"
            attempt.step = "applying the new configuration (new readers, watches)"
            self._apply(new)
            self._notices = tuple(notice.text for notice in found)
            log_notices(found, log)
        finally:
            self._applying.release()
        if attempt.given_up():  # it was given up on while applying, and reported failed: it runs now after all
            log.warning("an abandoned reload applied its configuration late", extra=fields(file=self._path))
            self._board.reload_succeeded(time.time(), self._notices)
        return None

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
            self._board.reload_succeeded(time.time(), self._notices)
        else:
            log.error("configuration reload failed; the previous configuration keeps running",
                      extra=fields(file=self._path, error=problem))
            self._board.reload_failed(time.time(), problem)


def serve(config: Config, listen_addresses: Sequence[str], telemetry_path: str,
          stop: Optional[threading.Event] = None, config_path: Optional[str] = None,
          web_config_file: Optional[str] = None, enable_lifecycle: bool = False, systemd_socket: bool = False,
          storage_path: str = "", sandbox: Sandbox = NO_SANDBOX, config_notices: Tuple[str, ...] = ()) -> int:
    """Runs until SIGTERM/SIGINT (or ``stop`` is set); returns the exit code.

    ``storage_path``: the folder of the readers' checkpoints ("" keeps none). ``sandbox``: what the unit hides,
    for the notices of reloads; ``config_notices``: those of ``config``, said at start-up already.

    An invalid ``web_config_file`` raises ConfigError before anything starts.
    """
    stop = stop or threading.Event()
    web = WebConfigFile(web_config_file)
    parts = Parts(build_readers(config), config.watch, CheckpointStore(storage_path) if storage_path else None)
    reloader = Reloader(config_path, config, parts.pipeline, parts.board, web, sandbox=sandbox,
                        config_notices=config_notices)
    renderer = parts.renderer
    app = App(telemetry_path, renderer.exposition_for_scrape, renderer.is_ready,
              lambda query: statuspage.render(parts.status(), renderer.sections(), telemetry_path,
                                              renderer.is_ready(), config_path, query),
              web=web, reload=reloader.reload if enable_lifecycle else None, health=reloader.health)
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
    _supervise(stop, parts, (http_thread, reload_thread), reloader)
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


def _supervise(stop: threading.Event, parts: Parts, threads: Sequence[threading.Thread],
               reloader: Optional[Reloader] = None) -> None:
    """Pings the systemd watchdog, only while the pipeline and the HTTP and reload threads are alive, and
    changes of the web config can be applied (``Reloader.security_stuck``).

    A look at the web config file stuck past the deadline means a user removed from it, or a revoked
    certificate, stays in force for as long as it hangs: the ping is withheld, so systemd restarts the
    daemon, which then reads the file afresh or, if it still cannot, refuses to start (exit 2): closed,
    never open. A stuck *configuration* reload only makes ``/-/healthy`` answer 503: it cannot weaken
    security, and the next reload is tried beside it.

    Nothing else runs here, so no reload or read can hold a ping back.
    """
    interval = sdnotify.watchdog_interval()
    if interval is None:
        while not stop.wait(1.0):  # a timeout keeps the main thread's signal handlers prompt
            pass
        return
    while True:
        if reloader is not None and reloader.security_stuck():
            log.error("changes of the web config file cannot be applied (a look at it is stuck); withholding "
                      "the systemd watchdog ping so systemd restarts us", extra=fields(reason=reloader.health()))
        elif parts.alive() and all(thread.is_alive() for thread in threads):
            sdnotify.notify("WATCHDOG=1")
        else:
            log.error("a pipeline thread died; withholding the systemd watchdog ping so systemd restarts us")
        if stop.wait(interval):
            return
