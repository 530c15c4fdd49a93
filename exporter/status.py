"""The exporter's status as immutable values: how files are read, folders watched and config reloaded.

A leaf module that the input side (``watcher``, ``statusboard``) and the
output side (``selfmetrics``, ``web.statuspage``) both import, so input never
depends on output. Per-file status is ``sources.FileStatus``: it is part of
a source's contract.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
from dataclasses import dataclass
from typing import Dict, FrozenSet, Mapping, Optional, Sequence, Tuple

from exporter.paths import PathPattern
from exporter.sources import FileStatus

#: Why a checkpoint was discarded at a restart (the files then read from the start): it could not be read
#: (``unreadable``: not a regular file, too large, an I/O error), it is damaged (``corrupt``: not a
#: checkpoint, checksum mismatch), it is of another format, version or configuration (``outdated``), or its
#: content is not what the reader could have written (``invalid``: a value out of range, a label past its
#: budget, a path outside the patterns: a forged or broken state).
CHECKPOINT_DISCARD_REASONS = ("unreadable", "corrupt", "outdated", "invalid")


@dataclass(frozen=True)
class WatchStatus:
    directory: str
    mode: str  # "events" or "poll"
    fstype: str
    up: bool


@dataclass(frozen=True)
class Notice:
    """What the configuration asks for that will not work (``config.notices``): ``text`` is ``key path: problem``.

    A notice that a ``pattern`` matched no file when it was checked lapses once the pattern matches one: the
    patterns are not checked again until a reload, and from then on the live "Patterns matching no file" says how
    things stand (a share mounted after the start must not go on being blamed)."""

    text: str
    error: bool = False  # cannot work as written (--check-config exits 2), else a warning
    pattern: str = ""


@dataclass(frozen=True)
class ReloadStatus:
    """The outcome of the last configuration reload (SIGHUP or POST /-/reload)."""

    successful: bool = True
    last_success_time: Optional[float] = None
    last_attempt_time: Optional[float] = None
    successes: int = 0
    failures: int = 0
    last_error: str = ""  # why the last reload failed ("" after a success)
    stuck: str = ""  # while a reload runs past its deadline: what it is stuck on; else ""
    #: What in the configuration in force will not work (``config.notices``: "key path: problem"), said at its
    #: start-up or reload; a rejected reload keeps the running configuration's.
    notices: Tuple[Notice, ...] = ()

    def succeeded(self, when: float, notices: Tuple[Notice, ...] = ()) -> ReloadStatus:
        """This status after one more reload that succeeded at ``when``, with the new configuration's notices."""
        return dataclasses.replace(self, successful=True, last_attempt_time=when, last_success_time=when,
                                   successes=self.successes + 1, last_error="", notices=notices)

    def failed(self, when: float, error: str = "") -> ReloadStatus:
        """This status after one more reload that failed at ``when``: the last success stays."""
        return dataclasses.replace(self, successful=False, last_attempt_time=when, failures=self.failures + 1,
                                   last_error=error)


@dataclass(frozen=True)
class ReloadOutcome:
    """The answer to one reload request (SIGHUP or ``POST /-/reload``): why it was rejected (None: the new
    configuration runs), and the notices of the configuration in force afterwards."""

    problem: Optional[str]
    notices: Tuple[str, ...] = ()


@dataclass(frozen=True)
class RuntimeStatus:
    """What the ingest side reports about itself, as one immutable value."""

    files: Tuple[FileStatus, ...]
    watches: Tuple[WatchStatus, ...]
    reader_failures: Mapping[str, int]
    rescans: int
    watch_restarts: int
    watch_overflows: int = 0  # inotify queue overflows: events were lost, a rescan followed
    checkpoint_writes: int = 0
    checkpoint_write_failures: int = 0
    checkpoint_restored: Mapping[str, int] = dataclasses.field(default_factory=dict)  # source -> readers restored
    #: reason (``CHECKPOINT_DISCARD_REASONS``) -> checkpoints discarded at a restore
    checkpoint_discarded: Mapping[str, int] = dataclasses.field(default_factory=dict)
    reload: ReloadStatus = ReloadStatus()
    web_reload: ReloadStatus = ReloadStatus()  # re-reads of --web.config.file
    patterns: Tuple[Tuple[str, PathPattern], ...] = ()  # (kind, pattern) of every configured pattern
    notes: Tuple[Tuple[str, str], ...] = ()  # (what, value) from sources that describe their set-up
    capped_patterns: FrozenSet[str] = frozenset()  # patterns whose last scan stopped at paths.MAX_MATCHES
    storage_path: str = ""  # the folder of the checkpoints (--storage.path); "" when none are kept
    checkpoint_failing: str = ""  # while checkpoint writes fail (a full disk): why; else ""
    #: ``files`` by reader, in the same order (each reader's snapshot's tuple, the same object while none of its
    #: files changed), so that what follows the files can pass over an unchanged reader's; () : one group.
    file_groups: Tuple[Tuple[FileStatus, ...], ...] = ()


def matched_files(patterns: Sequence[Tuple[str, PathPattern]],
                  files: Sequence[FileStatus]) -> Dict[Tuple[str, str], int]:
    """(kind, pattern) -> how many of the files read now that pattern matches; 0 points at a wrong path."""
    return {(kind, pattern.pattern): sum(1 for f in files if f.kind == kind and pattern.matches(f.path))
            for kind, pattern in patterns}


def running_as() -> str:
    """Who the exporter runs as, said where a permission error shows (the status page, an interpreter out of
    reach): the file's owner and mode are to be compared with this, not with the administrator's own rights."""
    uid, gid = os.geteuid(), os.getegid()
    groups = sorted(set(os.getgroups()) | {gid})
    return "user %s (uid %d), groups %s" % (_user_name(uid), uid, ", ".join(
        "%s (%d)" % (_group_name(g), g) for g in groups))


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a DynamicUser, or a uid the container's passwd does not list
        return "#%d" % uid


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return "#%d" % gid
