"""The configuration file: one section per source plus ``watch``.

Every problem is reported with its key path and line, all at once, so
``--check-config`` can list them for the administrator to fix in one go.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from exporter.boundedfile import read_regular
from exporter.logs import fields, one_line
from exporter.paths import PathPattern, walks_too_much
from exporter.sandbox import NONE as NO_SANDBOX
from exporter.sandbox import Sandbox
from exporter.schema import Boolean, Duration, Errors, Field, OneOf, Problem, Struct, compose, load_document
from exporter.sources import ConfiguredPath, Source, registered_sources
from exporter.status import Notice

WATCH_MODES = ("auto", "events", "poll")
#: A bigger configuration file is refused: a real one is a few KiB, and the YAML parser holds every node of it.
MAX_CONFIG_BYTES = 1 << 20
#: Seconds the open and read of the configuration file (or the web config file, or a certificate it names) may
#: take before it is abandoned and reported (a hung share): a reload is never held up longer by one file.
READ_TIMEOUT = 5.0
#: Seconds the checks of the configuration (``notices``) may take. They stat and list the configured folders, which
#: never returns on a share whose server stopped answering, and run Royal Render's interpreter (within its own 10 s).
CHECK_TIMEOUT = 15.0


@dataclass(frozen=True)
class WatchConfig:
    """How changes to the statistics files are noticed."""

    mode: str = "auto"
    poll_interval: float = 2.0
    rescan_interval: float = 60.0
    debounce: float = 0.1
    debounce_max_wait: float = 0.1
    stuck_read_timeout: float = 10.0
    follow_symlinks_outside: bool = False


WATCH_SCHEMA = Struct(
    {
        "mode": Field(OneOf(*WATCH_MODES), default="auto",
                      doc="auto: inotify on local file systems, polling on network ones"),
        "poll_interval": Field(Duration(), default=2.0, doc="how often polled folders are checked"),
        "rescan_interval": Field(Duration(), default=60.0, doc="full rescan that catches anything events missed"),
        "debounce": Field(Duration(), default=0.1,
                          doc="how long changes are gathered after the first one before their files are read"),
        "debounce_max_wait": Field(Duration(), default=0.1, doc="upper bound of watch.debounce"),
        "stuck_read_timeout": Field(Duration(), default=10.0,
                                    doc="a file read taking longer is reported stuck (source_up 0, logged)"),
        "follow_symlinks_outside": Field(Boolean(), default=False,
                                         doc="read matched paths that lead outside the configured folders"),
    },
    build=WatchConfig,
)


@dataclass(frozen=True)
class Config:
    sources: Mapping[str, Any]
    watch: WatchConfig


class ConfigError(Exception):
    """An invalid configuration, with every problem found."""

    def __init__(self, source: str, problems: List[Problem]):
        self.source = source
        self.problems = problems
        super().__init__("%s is invalid:\n%s" % (source, "\n".join("  " + str(p) for p in problems)))


def _root_schema() -> Struct:
    # An absent section is None: that source reads nothing.
    sections: Dict[str, Field] = {source.name: Field(source.schema, default=None, doc=source.doc)
                                  for source in registered_sources()}
    sections["watch"] = Field(WATCH_SCHEMA, default=WatchConfig())

    def build(watch, **sources):
        return Config(sources=sources, watch=watch)

    return Struct(sections, build=build)


def _empty(text: str) -> bool:
    try:
        node = compose(text)
    except yaml.YAMLError:
        return False  # load_document reports it with its line
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null")


def parse(text: str, source: str = "<config>") -> Config:
    if _empty(text):
        raise ConfigError(source, [Problem("", None, "the file is empty: configure at least one source "
                                                     "(see config/renderfarm-exporter.yml)")])
    errors = Errors()
    config = load_document(text, _root_schema(), errors)
    if errors.problems:
        raise ConfigError(source, errors.problems)
    return config


def read_text(path: str, max_bytes: int) -> str:
    """The text of a configuration file, read as checkpoints are (``boundedfile.read_regular``): a regular file
    of at most ``max_bytes`` (a FIFO, a device or a directory is refused, never waited on), read within
    ``READ_TIMEOUT``; else ConfigError saying why. The configuration and the web config file both use it."""
    try:
        return read_regular(path, max_bytes, timeout=READ_TIMEOUT).decode("utf-8")
    except OSError as exc:
        raise ConfigError(path, [Problem("", None, "cannot read: %s" % (exc.strerror or exc))]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [Problem("", None, "cannot read: not UTF-8 text (%s)" % exc)]) from None


def load(path: str) -> Config:
    """The configuration in ``path``; relative paths in it are relative to its folder, never the working one."""
    config = parse(read_text(path, MAX_CONFIG_BYTES), path)
    folder = os.path.dirname(os.path.abspath(path))
    resolved = {source.name: source.relative_to(config.sources[source.name], folder)
                if config.sources[source.name] is not None else None for source in registered_sources()}
    return replace(config, sources=resolved)


def notices(config: Config, sandbox: Sandbox = NO_SANDBOX, timeout: float = CHECK_TIMEOUT) -> List[Notice]:
    """What the configuration asks for that will not work, errors and warnings: the one place that says it, for
    ``--check-config``, start-up and every reload alike. Besides each source's own checks, for every path a
    source names: one the service's ``sandbox`` hides, and a pattern whose folder exists but that matches no
    file now (the empty mount point of a share that is not mounted). Each source is checked on a thread of its
    own, all within ``timeout`` (``_BoundedCheck``); control characters in the texts are escaped (one line each)."""
    checks = [(source.name, _BoundedCheck("%s %r %r" % (source.name, section, sandbox),
                                          _source_problems, source, section, sandbox))
              for source in registered_sources() for section in [config.sources[source.name]] if section is not None]
    deadline = time.monotonic() + timeout
    return [Notice(one_line("%s: %s" % (".".join(filter(None, (name, problem.key))), problem.message)),
                   problem.error, problem.unmatched)
            for name, check in checks for problem in check.problems(deadline, timeout)
            ] + [Notice(one_line("systemd unit: " + text), False, "") for text in sandbox.unread_notices()]


@dataclass(frozen=True)
class _SourceProblem:
    key: str  # below the source's section
    message: str
    error: bool = False
    unmatched: str = ""  # the pattern, for a pattern that matches no file now (``Notice.pattern``)


def _source_problems(source: Source, section: Any, sandbox: Sandbox) -> List[_SourceProblem]:
    """One source's section's problems: its own checks, then its paths'."""
    problems = [_SourceProblem(n.key, n.message, n.error) for n in source.check(section)]
    return problems + _path_problems(source.paths(section), sandbox)


class _BoundedCheck:
    """One source's checks on a thread of their own, waited for until a deadline. Past it they are reported as not
    finished (a hung share) and left running: they cannot be interrupted. Until they return, the same checks are
    not started again (reported at once), so a hung share costs one thread, not one per reload."""

    _lock = threading.Lock()
    _stuck: Dict[str, float] = {}  # checks past their deadline that have not returned -> when they started

    def __init__(self, key: str, work: Callable[..., List[_SourceProblem]], *args: Any):
        self._key = key
        self._done = False
        self._outcome: List[_SourceProblem] = []
        self._error: Optional[BaseException] = None
        self._started = time.monotonic()
        with self._lock:
            self._since = self._stuck.get(key)
        if self._since is None:
            self._thread = threading.Thread(target=self._run, args=(work, args), name="config-check", daemon=True)
            self._thread.start()

    def _run(self, work: Callable[..., List[_SourceProblem]], args: Tuple[Any, ...]) -> None:
        try:
            self._outcome = work(*args)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            self._error = exc
        finally:
            with self._lock:
                self._done = True
                if self._stuck.get(self._key) == self._started:
                    del self._stuck[self._key]

    def problems(self, deadline: float, timeout: float) -> List[_SourceProblem]:
        """The source's problems; one warning instead when the checks did not finish in time."""
        if self._since is None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            done = self._since is None and self._done
            if self._since is None and not done:
                self._stuck[self._key] = self._started
        if done and self._error is not None:
            raise self._error
        if done:
            return self._outcome
        since = self._started if self._since is None else self._since
        return [_SourceProblem("", "the checks did not finish within %g s: a configured folder does not answer (a hung "
                             "share?); not run again until they return (started %.0f s ago)"
                         % (timeout, time.monotonic() - since))]


def _path_problems(configured: Sequence[ConfiguredPath], sandbox: Sandbox) -> List[_SourceProblem]:
    """The problems of the paths a source names. A path with a problem of its own (hidden, or with a ``~`` or
    ``$NAME`` taken literally) is said once: not again for the paths below it (Royal Render's kinds under its
    root)."""
    problems: List[_SourceProblem] = []
    said: List[str] = []
    for path in configured:
        if any(path.path.startswith(folder.rstrip("/") + "/") for folder in said):
            continue
        own = [_SourceProblem(path.key, "%s is not expanded: the path is %s (relative paths are under the "
                                        "configuration file's folder); write the path itself" % (token, path.path))
               for token in _unexpanded(path.path)]
        why = sandbox.hides(path.path)
        own += [_SourceProblem(path.key, why)] if why is not None else []
        if own:
            said.append(path.path)
            problems += own
        elif path.pattern and _matches_nothing_now(path.path):
            problems.append(_SourceProblem(path.key, _matches_nothing(path.path), unmatched=path.path))
    return problems


#: What a shell would expand in a path and the exporter takes literally: ``~`` or ``~user`` starting a folder's name,
#: ``$NAME`` and ``${NAME}``.
_SHELL_WORDS = re.compile(r"(?:^|(?<=/))~[^/]*|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")


def _unexpanded(path: str) -> List[str]:
    return _SHELL_WORDS.findall(path)


def _matches_nothing_now(pattern: str) -> bool:
    """Whether the pattern's folder exists and no file matches it now. A missing folder is the source's notice,
    and a pattern that would walk a whole file system is not walked here (``paths.glob_problems`` says so)."""
    try:
        matcher = PathPattern(pattern)
    except re.error:
        return False  # the schema refused it already
    if walks_too_much(pattern) or not os.path.isdir(matcher.root):
        return False
    return next(iter(matcher.scan()), None) is None


def _matches_nothing(pattern: str) -> str:
    folder = PathPattern(pattern).root
    if not os.access(folder, os.R_OK | os.X_OK):
        return ("%s matches no file now: folder %s cannot be listed by this user (uid %d): give its group to the "
                "service (SupplementaryGroups=) or make it readable" % (pattern, folder, os.geteuid()))
    mount = folder
    while not os.path.ismount(mount):
        mount = os.path.dirname(mount)
    return ("%s matches no file now: nothing is read until one appears (folder %s exists, on the file system "
            "mounted at %s: if a share should be mounted on it, it is not)" % (pattern, folder, mount))


def log_notices(found: List[Notice], logger: logging.Logger) -> None:
    """Logs each notice (start-up and reloads say them alike; ``--check-config`` prints them)."""
    for notice in found:
        if notice.error:
            logger.error("configuration cannot work as written", extra=fields(problem=notice.text))
        else:
            logger.warning("configuration will not work as written", extra=fields(problem=notice.text))
