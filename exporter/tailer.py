"""Reads only what was appended to line-oriented files, across rotations.

Each distinct file (device, inode) has one cursor: the offset consumed so
far, an incomplete last line that waits for its newline, and a fingerprint
(its first line) with the last bytes before the offset. A cursor holds no
descriptor: every read opens the file, reads what is new and closes it, so
20,000 idle files cost no descriptor and cannot starve the HTTP side of
them. Files are opened with ``O_NONBLOCK`` and their type is checked on the
open descriptor: a FIFO, device, directory or socket at a watched path is
refused (``NotRegularFile``), never waited on. Paths point at cursors, so

- the same file reached through two patterns, a symlink or a hard link is
  read once;
- rotation by rename is found by looking for the file's inode in its folder
  (``cpu.acct`` -> ``Ocpu.acct`` or ``cpu.acct.1``): the renamed file is
  drained now and for a short grace period, in case the writer still has it
  open, while the new file is read from its start; when the renamed file is
  still matched (``Ocpu.acct``), its path adopts the existing cursor;
- truncation (copytruncate) is seen as a changed first line, or as a size
  below the offset with a changed first line; the new content is then read
  from its start, once;
- a file that shrinks in place (its first line unchanged, its size below
  the offset: an editor or a restore cut lines off its end) continues from
  its new end: what was read before is not counted again;
- a file replaced whole by a new inode with the same content plus more (rsync
  writes a temporary file and renames it over the old one) continues at the
  old offset, verified by the first line and the bytes before the offset;
- so does a file that comes back at its path after it was gone (a share
  unmounted and mounted again, a restore from backup): the read position of
  every closed file is remembered by path (a few hundred bytes each, the
  newest ``REMEMBERED_FILES``), and a reappearing file that continues it is
  not counted again.

Complete lines are handed over in blocks as raw bytes; decoding and parsing
belong to the reader of the file kind. A line longer than ``MAX_LINE_BYTES``
is discarded up to its newline and reported once to ``discarded``, with its
bytes, so a file's bytes are accounted for exactly.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

from exporter.logs import fields

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
FINGERPRINT_BYTES = 128
TAIL_BYTES = 64
MAX_LINE_BYTES = 1 << 20
RETIRE_GRACE_SECONDS = 2.0
REMEMBERED_FILES = 10000

Identity = Tuple[int, int]
BlockSink = Callable[[str, bytes], None]
#: ``discarded(label, nbytes, new_line)``: bytes of an over-long line; ``new_line`` on its first part.
DiscardSink = Callable[[str, int, bool], None]

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
_FILE_TYPES = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class NotRegularFile(OSError):
    """The path names something that is not a regular file; reading it could block for good."""


def open_regular(path: str) -> Tuple[int, os.stat_result]:
    """A descriptor of the regular file at ``path`` (the caller closes it) and its fstat.

    ``O_NONBLOCK`` keeps ``open()`` of a FIFO or device from waiting for a
    writer; the type is checked on the descriptor, not the path, so a swap
    between a check and the open cannot get past it.
    """
    fd = os.open(path, _OPEN_FLAGS)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        what = next((name for test, name in _FILE_TYPES if test(st.st_mode)), "not a regular file")
        raise NotRegularFile(errno.EINVAL, "refused: %s, not a regular file" % what, path)
    return fd, st


@contextmanager
def opened(path: str) -> Iterator[Tuple[int, os.stat_result]]:
    """``open_regular``, closed on exit."""
    fd, st = open_regular(path)
    try:
        yield fd, st
    finally:
        os.close(fd)


def _identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino)


def locate(identity: Identity, folder: str) -> Optional[str]:
    """The path under which the file ``identity`` is found in ``folder`` (a rename), or None (deleted)."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.inode() == identity[1] and _identity(entry.stat(follow_symlinks=False)) == identity:
                    return entry.path
    except OSError:
        pass
    return None


class _Position(NamedTuple):
    """Where reading a closed file stopped: enough to recognise its content if it comes back."""

    fingerprint: bytes
    offset: int
    tail: bytes


class _Cursor:
    """Read position in one file, reached through zero or more paths.

    ``where`` is the path a retired cursor (no matched path left) is read
    through: the name its file was renamed to.
    """

    __slots__ = ("identity", "offset", "partial", "skipping", "fingerprint", "tail", "paths", "label",
                 "retired_at", "where")

    def __init__(self, identity: Identity, label: str):
        self.identity = identity
        self.paths: Set[str] = set()
        self.label = label
        self.retired_at: Optional[float] = None
        self.where: Optional[str] = None
        self.restart()

    def restart(self) -> None:
        self.offset = 0
        self.partial = b""
        self.skipping = False
        self.fingerprint = b""
        self.tail = b""

    def position(self) -> _Position:
        return _Position(self.fingerprint, self.offset, self.tail)


def _continues(fd: int, size: int, position: _Position) -> bool:
    """Whether the open file holds ``position``'s content (first line, bytes before its offset) and maybe more."""
    return (
        size >= position.offset
        and os.pread(fd, len(position.fingerprint), 0) == position.fingerprint
        and os.pread(fd, len(position.tail), position.offset - len(position.tail)) == position.tail
    )


class Tailer:
    """Follows a set of paths; ``sink(label, block)`` receives complete lines.

    ``label`` is the path a file was first opened under, so per-path
    statistics stay with one name while the file is renamed away.
    Not thread-safe: one ingest thread owns it.
    """

    def __init__(self, sink: BlockSink, grace_seconds: float = RETIRE_GRACE_SECONDS,
                 discarded: DiscardSink = lambda label, nbytes, new_line: None):
        self._sink = sink
        self._discarded = discarded
        self._grace = grace_seconds
        self._by_path: Dict[str, _Cursor] = {}
        self._by_identity: Dict[Identity, _Cursor] = {}
        self._retired: List[_Cursor] = []
        self._gone: OrderedDict[str, _Position] = OrderedDict()

    @property
    def paths(self) -> Set[str]:
        return set(self._by_path)

    def label_of(self, path: str) -> Optional[str]:
        cursor = self._by_path.get(path)
        return cursor.label if cursor else None

    def live_labels(self) -> Set[str]:
        """Labels of every followed file, including rotated ones still in their grace period."""
        return {cursor.label for cursor in self._by_identity.values()}

    def follow(self, path: str) -> None:
        """Reads what is new at ``path``. Raises OSError (``NotRegularFile`` too) if it cannot be read.

        A path that became a FIFO, directory, ... no longer names the file it
        named: that file is forgotten (drained if it was renamed).
        """
        try:
            with opened(path) as (fd, st):
                self._follow(path, fd, _identity(st))
        except NotRegularFile:
            self.forget(path)
            raise

    def _follow(self, path: str, fd: int, identity: Identity) -> None:
        cursor = self._by_path.get(path)
        if cursor is not None and cursor.identity == identity:
            self._read(cursor, fd)
            return
        if cursor is not None:
            if self._continue_replacement(cursor, path, identity, fd):
                return
            self.forget(path)
        shared = self._by_identity.get(identity)
        if shared is not None:
            self._attach(shared, path)
            self._read(shared, fd)
            return
        cursor = self._by_identity[identity] = _Cursor(identity, label=path)
        self._attach(cursor, path)
        self._resume(cursor, path, fd)
        self._read(cursor, fd)

    def forget(self, path: str) -> None:
        """``path`` no longer names a followed file: a renamed file drains, then closes; a deleted one closes."""
        cursor = self._by_path.pop(path, None)
        if cursor is None:
            return
        cursor.paths.discard(path)
        if cursor.paths:
            return
        cursor.where = locate(cursor.identity, os.path.dirname(path))
        if cursor.where is None:
            self._close(cursor)
        else:
            cursor.retired_at = time.monotonic()
            self._retired.append(cursor)

    def drain_retired(self) -> None:
        """Reads the last lines of rotated files; closes those that stayed quiet."""
        now = time.monotonic()
        still: List[_Cursor] = []
        for cursor in self._retired:
            if cursor.paths:
                continue
            grew = self._read_retired(cursor)
            if grew is not None and (grew or now - (cursor.retired_at or now) < self._grace):
                still.append(cursor)
            else:
                self._close(cursor)
        self._retired = still

    def close(self) -> None:
        self._by_identity.clear()
        self._by_path.clear()
        self._retired.clear()

    def _attach(self, cursor: _Cursor, path: str) -> None:
        cursor.paths.add(path)
        cursor.retired_at = None
        cursor.where = None
        self._by_path[path] = cursor

    def _close(self, cursor: _Cursor) -> None:
        """A finished file: its last line counts even without a final newline; its position is remembered."""
        if cursor.partial:
            self._sink(cursor.label, cursor.partial + b"\n")
            cursor.partial = b""
        elif cursor.fingerprint:
            self._gone[cursor.label] = cursor.position()
            self._gone.move_to_end(cursor.label)
            while len(self._gone) > REMEMBERED_FILES:
                self._gone.popitem(last=False)
        if self._by_identity.get(cursor.identity) is cursor:
            del self._by_identity[cursor.identity]
        log.debug("closed rotated or deleted file", extra=fields(path=cursor.label, bytes=cursor.offset))

    def _read_retired(self, cursor: _Cursor) -> Optional[int]:
        """Bytes read from a renamed file through the name it was found under; None once it is gone."""
        if cursor.where is None:  # not retired: forget() sets it, _attach() clears it with the paths
            return None
        try:
            with opened(cursor.where) as (fd, st):
                if _identity(st) != cursor.identity:
                    return None
                return self._read(cursor, fd)
        except OSError as exc:
            log.debug("rotated file gone", extra=fields(path=cursor.label, where=cursor.where, error=exc))
            return None

    def _continue_replacement(self, old: _Cursor, path: str, identity: Identity, fd: int) -> bool:
        """Whether a new inode at ``path`` is ``old``'s content plus more (rsync-style), and ``old`` is gone."""
        if (
            old.paths != {path}
            or not old.fingerprint
            or identity in self._by_identity
            or not _continues(fd, os.fstat(fd).st_size, old.position())
            or locate(old.identity, os.path.dirname(path)) is not None
        ):
            return False
        del self._by_identity[old.identity]
        old.identity = identity
        self._by_identity[identity] = old
        log.info("file replaced by a copy with more lines; continuing", extra=fields(path=path))
        self._read(old, fd)
        return True

    def _resume(self, cursor: _Cursor, path: str, fd: int) -> None:
        """Starts a new file where an earlier file at ``path`` stopped, if it is that file's content plus more."""
        predecessor = next((c for c in self._retired if c.label == path and not c.paths), None)
        position: Optional[_Position]
        if predecessor is not None:
            self._read_retired(predecessor)
            if predecessor.partial or not predecessor.fingerprint:
                return
            position = predecessor.position()
        else:
            position = self._gone.get(path)
        if position is None or not _continues(fd, os.fstat(fd).st_size, position):
            return
        if predecessor is not None:
            self._retired.remove(predecessor)
            del self._by_identity[predecessor.identity]
        self._gone.pop(path, None)
        cursor.fingerprint, cursor.offset, cursor.tail = position
        log.info("file came back with the lines already read; continuing after them",
                 extra=fields(path=path, offset=position.offset))

    def _check_start(self, cursor: _Cursor, fd: int, size: int) -> None:
        """Restarts a truncated or rewritten file; a file shrunk in place continues from its new end."""
        fp = cursor.fingerprint
        if fp and os.pread(fd, len(fp), 0) != fp:
            log.info("file truncated or rewritten; reading it from the start", extra=fields(path=cursor.label))
            cursor.restart()
        elif size < cursor.offset and fp:
            log.info("file shrank in place; continuing from its new end without counting again",
                     extra=fields(path=cursor.label, offset=cursor.offset, size=size))
            cursor.offset, cursor.partial, cursor.skipping = size, b"", False
            cursor.tail = os.pread(fd, min(TAIL_BYTES, size), size - min(TAIL_BYTES, size))
        elif size < cursor.offset:
            cursor.restart()

    def _read(self, cursor: _Cursor, fd: int) -> int:
        """Consumes everything after the cursor; returns the number of bytes read."""
        size = os.fstat(fd).st_size
        self._check_start(cursor, fd, size)
        if size == cursor.offset:
            return 0
        start = cursor.offset
        while True:
            chunk = os.pread(fd, CHUNK_BYTES, cursor.offset)
            if not chunk:
                break
            cursor.offset += len(chunk)
            cursor.tail = (cursor.tail + chunk)[-TAIL_BYTES:]
            self._emit(cursor, chunk)
        if not cursor.fingerprint:
            cursor.fingerprint = self._first_line(fd)
        return cursor.offset - start

    def _emit(self, cursor: _Cursor, chunk: bytes) -> None:
        if cursor.skipping:
            chunk = self._skip(cursor, chunk)
        data = cursor.partial + chunk if cursor.partial else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            cursor.partial = data
        else:
            cursor.partial = data[cut + 1 :]
            self._sink(cursor.label, data[: cut + 1])
        if len(cursor.partial) > MAX_LINE_BYTES:
            self._discarded(cursor.label, len(cursor.partial), True)
            cursor.partial, cursor.skipping = b"", True

    def _skip(self, cursor: _Cursor, chunk: bytes) -> bytes:
        """Discards the rest of an over-long line, up to and with its newline; returns what follows it."""
        newline = chunk.find(b"\n")
        end = len(chunk) if newline < 0 else newline + 1
        self._discarded(cursor.label, end, False)
        cursor.skipping = newline < 0
        return chunk[end:]

    @staticmethod
    def _first_line(fd: int) -> bytes:
        head = os.pread(fd, FINGERPRINT_BYTES, 0)
        newline = head.find(b"\n")
        if newline >= 0:
            return head[: newline + 1]
        return head if len(head) == FINGERPRINT_BYTES else b""
