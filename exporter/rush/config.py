"""The ``rush`` config section: its schema, its relative paths, and what in it cannot work."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import List, Optional, Pattern, Tuple

from exporter.budget import TRUNCATED_SUFFIX
from exporter.paths import glob_problems, missing_root
from exporter.schema import (
    Boolean,
    Duration,
    Either,
    Field,
    Glob,
    HostRegex,
    Integer,
    ListOf,
    Scalar,
    String,
    Struct,
    glob_path,
)
from exporter.sources import ConfigNotice, ConfiguredPath

#: Series one admitted user or job title can create: frames in 4 statuses plus wall seconds.
SERIES_PER_BREAKDOWN_VALUE = 5
#: Series one admitted host can create: frames in 4 statuses, 3 kinds of seconds, 6 record types,
#: daemon starts, utilization, daemon online, last record time.
SERIES_PER_HOST = 17
DEFAULT_HOST_SERIES_BUDGET = 34000
DEFAULT_MAX_LABEL_LENGTH = 128
DEFAULT_MAX_CLOCK_SKEW = 300.0


@dataclass(frozen=True)
class CpuAcctEntry:
    """One configured file or glob; every file it matches is one source file."""

    path: str
    host: Optional[str] = None
    host_from_path: Optional[Pattern] = None


@dataclass(frozen=True)
class Breakdown:
    """An opt-in per-user or per-title breakdown and its series budget."""

    enabled: bool = False
    series_budget: int = 2000


@dataclass(frozen=True)
class RushConfig:
    cpu_acct: Tuple[CpuAcctEntry, ...] = ()
    host_from_path: Optional[Pattern] = None
    users: Breakdown = Breakdown()
    titles: Breakdown = Breakdown()
    host_series_budget: int = DEFAULT_HOST_SERIES_BUDGET
    max_label_length: int = DEFAULT_MAX_LABEL_LENGTH
    max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW
    #: Processes that read a big backlog (a cold start); None is ``auto``: one per core.
    read_processes: Optional[int] = None


def _entry_from_string(value) -> CpuAcctEntry:
    return CpuAcctEntry(path=glob_path(value))


def _breakdown_schema() -> Struct:
    return Struct(
        {
            "enabled": Field(Boolean(), default=False, doc="export this breakdown"),
            "series_budget": Field(
                Integer(minimum=SERIES_PER_BREAKDOWN_VALUE * 2),
                default=2000,
                doc="most series the breakdown may create; later values go to __other__",
            ),
        },
        build=Breakdown,
    )


_ENTRY = Either(
    Scalar("a path or glob", _entry_from_string),
    Struct(
        {
            "path": Field(Glob(), required=True, doc="file or glob (** allowed)"),
            "host": Field(String(), doc="host label for this file's gauges"),
            "host_from_path": Field(HostRegex(), doc="regex with (?P<host>...) searched in the path"),
        },
        build=CpuAcctEntry,
    ),
)

_BREAKDOWNS = Struct({"users": Field(_breakdown_schema(), Breakdown()),
                      "titles": Field(_breakdown_schema(), Breakdown())})


_HOSTS = Struct({
    "series_budget": Field(Integer(minimum=SERIES_PER_HOST * 2), default=DEFAULT_HOST_SERIES_BUDGET,
                           doc="most series host labels may create (%d per host); later hosts go to __other__"
                           % SERIES_PER_HOST),
})


def _read_processes(value) -> Optional[int]:
    """``auto`` (None: one per core) or a number of processes; 1 reads in the daemon's own process."""
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError()
    return value


def _rush_config(cpu_acct, host_from_path, breakdowns, hosts, max_label_length, max_clock_skew,
                 read_processes) -> RushConfig:
    return RushConfig(cpu_acct, host_from_path, breakdowns["users"], breakdowns["titles"], hosts["series_budget"],
                      max_label_length, max_clock_skew, read_processes)


SCHEMA = Struct(
    {
        "cpu_acct": Field(ListOf(_ENTRY), default=(), doc="cpu.acct files or globs; each matched file is read"),
        "host_from_path": Field(HostRegex(), doc="default host regex for every entry"),
        "breakdowns": Field(_BREAKDOWNS, default=_BREAKDOWNS.defaults()),
        "hosts": Field(_HOSTS, default=_HOSTS.defaults()),
        "max_label_length": Field(Integer(minimum=len(TRUNCATED_SUFFIX) + 1), default=DEFAULT_MAX_LABEL_LENGTH,
                                  doc="longest label value taken from a file; longer ones are cut and marked"),
        "max_clock_skew": Field(Duration(), default=DEFAULT_MAX_CLOCK_SKEW,
                                doc="records dated further ahead of the clock never become the latest"),
        "read_processes": Field(Scalar("auto or a number of processes, at least 1", _read_processes),
                                default=None, doc="processes that read a big backlog (a cold start); "
                                                  "auto: one per core; 1: the daemon's own process"),
    },
    build=_rush_config,
)


def relative_to(config: RushConfig, folder: str) -> RushConfig:
    """Relative ``cpu_acct`` paths are relative to the config file's folder."""
    return replace(config, cpu_acct=tuple(replace(entry, path=os.path.join(folder, entry.path))
                                          for entry in config.cpu_acct))


def check(config: RushConfig) -> List[ConfigNotice]:
    if not config.cpu_acct:
        return [ConfigNotice("cpu_acct", "no files or globs: Rush reads nothing")]
    notices = []
    for index, entry in enumerate(config.cpu_acct):
        key = "cpu_acct[%d]" % index
        notices += [ConfigNotice(key, problem) for problem in glob_problems(entry.path)]
        folder = missing_root(entry.path)
        if folder is not None:
            notices.append(ConfigNotice(key, "folder %s does not exist: nothing is read until it does "
                                             "(a share not mounted?)" % folder))
    return notices


def paths(config: RushConfig) -> List[ConfiguredPath]:
    """The configured files and globs, for the checks every source shares (``config.notices``)."""
    return [ConfiguredPath("cpu_acct[%d]" % index, entry.path, pattern=True)
            for index, entry in enumerate(config.cpu_acct)]
