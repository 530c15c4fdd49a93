"""Checkpoints: readers' state on disk, so that a restart reads only the bytes written since.

A reader that implements ``sources.Checkpointed`` gets one file per source
and reader kind under the storage directory (``--storage.path``): a header
line (format version, exporter version, source, kind, a fingerprint of the
reader's configuration and a SHA-256 of the state), then the state. It is
written atomically (a temporary file in the same directory, fsync, rename,
fsync of the directory), by the ingest thread after a sync at most every
``WRITE_INTERVAL`` seconds when the state changed (longer on a big farm,
see ``CPU_SHARE``), and once more at a clean stop; it is restored before
the first sync. A checkpoint that is missing, corrupt, or from another format, exporter version or configuration is
ignored with a log line saying why: the files are then read from the start,
which is slower, never wrong. So is anything else at the path: a symlink, a
FIFO, a file larger than ``MAX_BYTES``. Checkpoints are written mode 0600.

The checksum has no secret: it finds corruption, not forgery. So a reader
validates what it restores like input (``Checkpointed.restore`` raises
``ValueError`` for a state it could not have written; Rush's rules are in
``exporter.rush.saved``), and a checkpoint refused for any reason is
discarded whole, counted by reason (``DISCARD_REASONS``, the exporter's
``renderfarm_exporter_checkpoint_discards_total``) and logged once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections import Counter
from typing import Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

from exporter import __version__
from exporter.boundedfile import read_regular
from exporter.logs import RateLimitedLog, fields
from exporter.sources import Checkpointed, Reader
from exporter.status import CHECKPOINT_DISCARD_REASONS as DISCARD_REASONS

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAGIC = b"renderfarm-exporter checkpoint "
#: Least seconds between two writes of a changed state (a crash costs at most this much re-reading, never data).
WRITE_INTERVAL = 2.0
#: Share of a core that writing checkpoints may take: after a write that took ``t`` seconds, the next waits at
#: least ``t / CPU_SHARE``. A checkpoint holds every file's state (200 Rush files: about 5 ms to take; 2,000:
#: 30-70 ms), so a write every 2 s would cost a fifth of the steady state at 200 files and more than the rest
#: at 2,000; this stretches the interval there (10 s at 200 files, 60-140 s at 2,000) and leaves it at 2 s on
#: a farm of a few dozen files. A
#: restart after a crash reads again what came after the last checkpoint: at most that interval's lines, never
#: a line lost or counted twice. Preferred to writing only what changed since a full write, which would add a
#: second format to validate at a restore for what this constant buys (bench/reading.md).
CPU_SHARE = 0.0005
#: The systemd ``StateDirectory=`` of the unit; ``--storage.path`` defaults to it.
STATE_DIRECTORY_ENV = "STATE_DIRECTORY"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
#: A bigger checkpoint file is ignored (files read from the start): far above 20,000 files' state, far below
#: what would strain the daemon's memory.
MAX_BYTES = 512 << 20


def default_path(environ: Optional[Dict[str, str]] = None) -> str:
    """``$STATE_DIRECTORY`` (its first entry: systemd may list several), or "" (no checkpoints)."""
    value = (os.environ if environ is None else environ).get(STATE_DIRECTORY_ENV, "")
    return value.split(":")[0]


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class CheckpointStore:
    """Checkpoint files in one directory, one per (source, reader kind)."""

    def __init__(self, directory: str):
        self.directory = directory

    def path(self, source: str, kind: str) -> str:
        return os.path.join(self.directory, "%s.%s.checkpoint" % (_UNSAFE.sub("_", source), _UNSAFE.sub("_", kind)))

    def write(self, source: str, kind: str, config: str, state: bytes) -> None:
        """Replaces the checkpoint atomically; raises OSError (the caller logs it and keeps running)."""
        header = {"format": FORMAT_VERSION, "exporter": __version__, "source": source, "kind": kind,
                  "config": fingerprint(config), "sha256": hashlib.sha256(state).hexdigest(), "bytes": len(state)}
        data = MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + state
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".checkpoint-", dir=self.directory)
        try:
            os.fchmod(fd, 0o600)  # mkstemp's mode already; said here because the rename keeps it
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path(source, kind))
        except BaseException:
            _remove(temporary)
            raise
        _fsync_directory(self.directory)

    def read(self, source: str, kind: str, config: str) -> Optional[bytes]:
        """The state saved for this source, kind and configuration; None (and why, logged) if there is none."""
        return self.fetch(source, kind, config)[0]

    def fetch(self, source: str, kind: str, config: str) -> Tuple[Optional[bytes], Optional[str]]:
        """(state, None); or (None, why it was discarded: one of ``DISCARD_REASONS``), logged; or (None, None)
        when there is no checkpoint yet."""
        path = self.path(source, kind)
        try:
            data = _read_regular(path)
        except FileNotFoundError:
            log.info("no checkpoint yet: reading the files from the start", extra=fields(path=path))
            return None, None
        except OSError as exc:
            log.warning("cannot read the checkpoint: reading the files from the start",
                        extra=fields(path=path, error=exc))
            return None, "unreadable"
        state, reason, problem = _verified(data, source, kind, config)
        if problem is not None:
            log.warning("checkpoint ignored: reading the files from the start", extra=fields(path=path, reason=problem))
        return state, reason


def _read_regular(path: str) -> bytes:
    """The content of the regular file at ``path``, not through a symlink, at most ``MAX_BYTES``; OSError else.

    Opened as the configuration is (``boundedfile.read_regular``): ``O_NONBLOCK`` keeps a FIFO planted at the
    path from blocking the open, and the type and size are checked on the descriptor, so nothing planted in
    the directory can hang the start or fill the memory."""
    return read_regular(path, MAX_BYTES, follow_symlinks=False)


def _verified(data: bytes, source: str, kind: str, config: str) -> Tuple[Optional[bytes], Optional[str],
                                                                        Optional[str]]:
    """(state, None, None) if ``data`` is a sound checkpoint for this source, kind and configuration, else
    (None, reason, why): ``reason`` one of ``DISCARD_REASONS``, ``why`` for the log."""
    head, newline, state = data.partition(b"\n")
    if not head.startswith(MAGIC) or not newline:
        return None, "corrupt", "not a checkpoint file"
    try:
        header = json.loads(head[len(MAGIC):])
    except (ValueError, RecursionError):
        return None, "corrupt", "corrupt header"
    if not isinstance(header, dict):
        return None, "corrupt", "corrupt header"
    checks = (
        (header.get("format") == FORMAT_VERSION, "outdated", "written in format %s, this exporter reads %d"
         % (_excerpt(header.get("format")), FORMAT_VERSION)),
        (header.get("exporter") == __version__, "outdated", "written by exporter version %s, this is %s"
         % (_excerpt(header.get("exporter")), __version__)),
        ((header.get("source"), header.get("kind")) == (source, kind), "outdated",
         "written for another source or kind"),
        (header.get("config") == fingerprint(config), "outdated", "written under another configuration of the source"),
        (header.get("bytes") == len(state) and header.get("sha256") == hashlib.sha256(state).hexdigest(),
         "corrupt", "corrupt: checksum mismatch"),
    )
    failed = next(((reason, why) for passed, reason, why in checks if not passed), None)
    return (None, *failed) if failed is not None else (state, None, None)


def _excerpt(value: object) -> str:
    """A short escaped excerpt of a value read from a checkpoint's header, for the log."""
    text = repr(value)
    return ascii(text[:40] + ("..." if len(text) > 40 else ""))


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_directory(directory: str) -> None:
    """The rename is durable only once the directory is on disk too."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointCounts(NamedTuple):
    """What the exporter's own metrics show of one source's checkpoints."""

    writes: int
    write_failures: int
    restored: int  # readers that started from a checkpoint
    discarded: Mapping[str, int] = {}  # checkpoints discarded at a restore, by reason (``DISCARD_REASONS``)
    failing: str = ""  # while the last write failed: why (a full disk); "" once one succeeds


class Checkpointer:
    """The checkpoints of one source's readers, driven by its ingest thread (the readers' only user)."""

    def __init__(self, store: CheckpointStore, source: str, readers: Sequence[Reader],
                 interval: float = WRITE_INTERVAL, cpu_share: float = CPU_SHARE):
        self._store = store
        self._source = source
        self._readers = [reader for reader in readers if isinstance(reader, Checkpointed)]
        self._interval = interval
        self._cpu_share = cpu_share
        self._next_interval = interval
        self._written: Dict[int, str] = {}
        self._last_write = time.monotonic()
        self._pending = False
        #: For the exporter's own metrics: checkpoints written, writes that failed, readers restored at start.
        self.writes = 0
        self.write_failures = 0
        self.restored = 0
        #: Checkpoints discarded at a restore, by reason: read from the start instead.
        self.discarded: Counter[str] = Counter({reason: 0 for reason in DISCARD_REASONS})
        #: Checkpoint path -> why its last write failed, while it fails (a full disk): the status page's summary.
        self._failing: Dict[str, str] = {}
        #: A write fails every ``interval`` while the disk is full: one warning a minute, and one line when it ends.
        self._failure_log = RateLimitedLog(log)

    @property
    def failing(self) -> str:
        """Why the checkpoints whose last write failed failed ("" while every last write succeeded)."""
        return "; ".join(self._failing.values())

    def restore(self) -> None:
        """Before the first sync: each reader takes its checkpoint, if there is a sound one. A checkpoint the
        reader refuses is discarded whole (the reader changed nothing), counted and logged once, with why
        (where in the state, never what was found there but a short excerpt of a number)."""
        for reader in self._readers:
            assert isinstance(reader, Checkpointed)
            config = reader.checkpoint_config()
            state, reason = self._store.fetch(self._source, reader.kind, config)
            if reason is not None:
                self.discarded[reason] += 1
            if state is None:
                continue
            started = time.monotonic()
            why = "written in another version of the reader's state"
            try:
                restored = reader.restore(state)
            except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep to parse
                restored, reason, why = False, "invalid", str(exc)[:300]
            except Exception as exc:  # noqa: BLE001 - a bug of the reader: the files are read from the start
                restored, reason, why = False, "invalid", "unexpected %s" % type(exc).__name__
            else:
                reason = "outdated"
            if not restored:
                self.discarded[reason] += 1
                log.warning("checkpoint discarded: reading the files from the start", extra=fields(
                    source=self._source, kind=reader.kind, path=self._store.path(self._source, reader.kind),
                    reason=reason, problem=why))
            else:
                self.restored += 1
                self._written[id(reader)] = hashlib.sha256(state).hexdigest()
                log.info("checkpoint restored: reading only what was written since",
                         extra=fields(source=self._source, kind=reader.kind,
                                      seconds=round(time.monotonic() - started, 3)))

    def after_sync(self) -> None:
        """A sync ran: the states may have changed; they are saved now if the last write is ``interval`` old,
        else when ``due_at`` comes (the ingest thread wakes up for it)."""
        self._pending = True
        self.save_if_due()

    def due_at(self) -> Optional[float]:
        """Monotonic time of the next save, None while nothing waits to be saved."""
        return self._last_write + self._next_interval if self._pending else None

    def save_if_due(self) -> None:
        due = self.due_at()
        if due is not None and time.monotonic() >= due:
            self.save()

    def save(self) -> None:
        """Writes every reader's state that changed since its last write (errors are logged, not raised)."""
        self._last_write = time.monotonic()
        self._pending = False
        started = time.thread_time()
        try:
            self._save_readers()
        finally:
            self._next_interval = max(self._interval, (time.thread_time() - started) / self._cpu_share)

    def _save_readers(self) -> None:
        for reader in self._readers:
            assert isinstance(reader, Checkpointed)
            try:
                state = reader.checkpoint()
            except Exception as exc:  # noqa: BLE001 - a closed reader: the checkpoint on disk stays as it was
                self._failure_log.warning("take:" + reader.kind, "cannot take the checkpoint; the one on disk is kept",
                                          source=self._source, kind=reader.kind, error=repr(exc))
                continue
            digest = hashlib.sha256(state).hexdigest()
            if self._written.get(id(reader)) == digest:
                continue
            path = self._store.path(self._source, reader.kind)
            try:
                self._store.write(self._source, reader.kind, reader.checkpoint_config(), state)
            except OSError as exc:
                self._failure_log.warning(path, "cannot write the checkpoint; a restart will read more",
                                          path=path, error=exc)
                self._failing[path] = "%s: %s" % (path, exc.strerror or exc)
                self.write_failures += 1
                continue
            self._failure_log.ended(path, "checkpoint written again", path=path)
            self._failing.pop(path, None)
            self._written[id(reader)] = digest
            self.writes += 1
