"""Reads only what was appended to line-oriented files, across rotations.

Each distinct file (device, inode) has one cursor: its open handle, the
offset consumed so far and an incomplete last line that waits for its
newline. Paths point at cursors, so

- the same file reached through two patterns, a symlink or a hard link is
  read once;
- rotation by rename keeps reading the old file through its open handle
  (drained now and for a short grace period, in case the writer still has it
  open) while the new file is read from its start; when the renamed file is
  still matched (``Ocpu.acct``), its path adopts the existing cursor;
- truncation (copytruncate) is seen as a size below the offset, or as a
  changed first line when the file has already grown back past the offset;
  the new content is then read from its start, once;
- a file replaced whole by a new inode with the same content plus more (rsync
  writes a temporary file and renames it over the old one) continues at the
  old offset, verified by the first line and the bytes before the offset;
- so does a file that comes back at its path after it was gone (a share
  unmounted and mounted again, a restore from backup): the read position of
  every closed file is remembered by path (a few hundred bytes each, the
  newest ``REMEMBERED_FILES``), and a reappearing file that continues it is
  not counted again.

Complete lines are handed over in blocks as raw bytes; decoding and parsing
belong to the reader of the file kind.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections import OrderedDict
from typing import Callable, Dict, List, NamedTuple, Optional, Set, Tuple

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


class _Position(NamedTuple):
    """Where reading a closed file stopped: enough to recognise its content if it comes back."""

    fingerprint: bytes
    offset: int
    tail: bytes


class _Cursor:
    """Read position in one file, reached through zero or more paths."""

    __slots__ = ("identity", "handle", "offset", "partial", "fingerprint", "tail", "paths", "label", "retired_at")

    def __init__(self, identity: Identity, handle, label: str):
        self.identity = identity
        self.handle = handle
        self.offset = 0
        self.partial = b""
        self.fingerprint = b""
        self.tail = b""
        self.paths: Set[str] = set()
        self.label = label
        self.retired_at: Optional[float] = None

    def restart(self) -> None:
        self.offset = 0
        self.partial = b""
        self.fingerprint = b""
        self.tail = b""


def _identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino)


class Tailer:
    """Follows a set of paths; ``sink(label, block)`` receives complete lines.

    ``label`` is the path a file was first opened under, so per-path
    statistics stay with one name while the file is renamed away.
    Not thread-safe: one ingest thread owns it.
    """

    def __init__(self, sink: BlockSink, grace_seconds: float = RETIRE_GRACE_SECONDS):
        self._sink = sink
        self._grace = grace_seconds
        self._by_path: Dict[str, _Cursor] = {}
        self._by_identity: Dict[Identity, _Cursor] = {}
        self._retired: List[_Cursor] = []
        self._gone: "OrderedDict[str, _Position]" = OrderedDict()

    @property
    def paths(self) -> Set[str]:
        return set(self._by_path)

    def label_of(self, path: str) -> Optional[str]:
        cursor = self._by_path.get(path)
        return cursor.label if cursor else None

    def live_labels(self) -> Set[str]:
        """Labels of every open file, including rotated ones still in their grace period."""
        return {cursor.label for cursor in self._by_identity.values()}

    def follow(self, path: str) -> None:
        """Reads what is new at ``path``. Raises OSError if it cannot be read."""
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            self.forget(path)
            return
        identity = _identity(st)
        cursor = self._by_path.get(path)
        if cursor is not None and cursor.identity == identity:
            self._read(cursor)
            return
        if cursor is not None:
            self._read(cursor)
            if self._continue_replacement(cursor, path, identity):
                return
            self.forget(path)
        shared = self._by_identity.get(identity)
        if shared is not None:
            self._attach(shared, path)
            self._read(shared)
            return
        handle = open(path, "rb")
        cursor = _Cursor(_identity(os.fstat(handle.fileno())), handle, label=path)
        if cursor.identity in self._by_identity:
            handle.close()
            return self.follow(path)
        self._by_identity[cursor.identity] = cursor
        self._attach(cursor, path)
        self._resume(cursor, path)
        self._read(cursor)

    def forget(self, path: str) -> None:
        """``path`` no longer names a followed file; its cursor drains, then closes."""
        cursor = self._by_path.pop(path, None)
        if cursor is None:
            return
        cursor.paths.discard(path)
        if not cursor.paths:
            cursor.retired_at = time.monotonic()
            self._retired.append(cursor)

    def drain_retired(self) -> None:
        """Reads the last lines of rotated or deleted files; closes those that stayed quiet."""
        now = time.monotonic()
        still: List[_Cursor] = []
        for cursor in self._retired:
            if cursor.paths:
                continue
            grew = self._safe_read(cursor)
            if grew or now - (cursor.retired_at or now) < self._grace:
                still.append(cursor)
            else:
                self._close(cursor)
        self._retired = still

    def close(self) -> None:
        for cursor in list(self._by_identity.values()):
            cursor.handle.close()
        self._by_identity.clear()
        self._by_path.clear()
        self._retired.clear()

    def _attach(self, cursor: _Cursor, path: str) -> None:
        cursor.paths.add(path)
        cursor.retired_at = None
        self._by_path[path] = cursor

    def _close(self, cursor: _Cursor) -> None:
        """A finished file: its last line counts even without a final newline; its position is remembered."""
        if cursor.partial:
            self._sink(cursor.label, cursor.partial + b"\n")
            cursor.partial = b""
        elif cursor.fingerprint:
            self._gone[cursor.label] = _Position(cursor.fingerprint, cursor.offset, cursor.tail)
            self._gone.move_to_end(cursor.label)
            while len(self._gone) > REMEMBERED_FILES:
                self._gone.popitem(last=False)
        cursor.handle.close()
        if self._by_identity.get(cursor.identity) is cursor:
            del self._by_identity[cursor.identity]
        log.debug("closed rotated or deleted file", extra=fields(path=cursor.label, bytes=cursor.offset))

    def _continue_replacement(self, old: _Cursor, path: str, identity: Identity) -> bool:
        """Whether a new inode at ``path`` is ``old``'s content plus more (rsync-style)."""
        if old.paths != {path} or not old.fingerprint or os.fstat(old.handle.fileno()).st_nlink != 0:
            return False
        handle = open(path, "rb")
        fd = handle.fileno()
        st = os.fstat(fd)
        same = (
            _identity(st) == identity
            and st.st_size >= old.offset
            and identity not in self._by_identity
            and os.pread(fd, len(old.fingerprint), 0) == old.fingerprint
            and os.pread(fd, len(old.tail), old.offset - len(old.tail)) == old.tail
        )
        if not same:
            handle.close()
            return False
        old.handle.close()
        del self._by_identity[old.identity]
        old.handle, old.identity = handle, identity
        self._by_identity[identity] = old
        log.info("file replaced by a copy with more lines; continuing", extra=fields(path=path))
        self._read(old)
        return True

    def _resume(self, cursor: _Cursor, path: str) -> None:
        """Starts a new file where an earlier file at ``path`` stopped, if it is that file's content plus more."""
        predecessor = next((c for c in self._retired if c.label == path and not c.paths), None)
        if predecessor is not None:
            self._safe_read(predecessor)
            if predecessor.partial or not predecessor.fingerprint:
                return
            position = _Position(predecessor.fingerprint, predecessor.offset, predecessor.tail)
        else:
            position = self._gone.get(path)
        if position is None or not self._continues(cursor.handle.fileno(), position):
            return
        if predecessor is not None:
            self._retired.remove(predecessor)
            predecessor.handle.close()
            del self._by_identity[predecessor.identity]
        self._gone.pop(path, None)
        cursor.fingerprint, cursor.offset, cursor.tail = position
        log.info("file came back with the lines already read; continuing after them",
                 extra=fields(path=path, offset=position.offset))

    @staticmethod
    def _continues(fd: int, position: _Position) -> bool:
        return (
            os.fstat(fd).st_size >= position.offset
            and os.pread(fd, len(position.fingerprint), 0) == position.fingerprint
            and os.pread(fd, len(position.tail), position.offset - len(position.tail)) == position.tail
        )

    def _safe_read(self, cursor: _Cursor) -> int:
        try:
            return self._read(cursor)
        except OSError as exc:
            log.warning("cannot read rotated file", extra=fields(path=cursor.label, error=exc))
            return 0

    def _truncated(self, cursor: _Cursor, size: int) -> bool:
        if size < cursor.offset:
            return True
        fp = cursor.fingerprint
        return bool(fp) and os.pread(cursor.handle.fileno(), len(fp), 0) != fp

    def _read(self, cursor: _Cursor) -> int:
        """Consumes everything after the cursor; returns the number of bytes read."""
        fd = cursor.handle.fileno()
        size = os.fstat(fd).st_size
        if self._truncated(cursor, size):
            log.info("file truncated; reading it from the start", extra=fields(path=cursor.label))
            cursor.restart()
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
        data = cursor.partial + chunk if cursor.partial else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            cursor.partial = data
        else:
            cursor.partial = data[cut + 1 :]
            self._sink(cursor.label, data[: cut + 1])
        if len(cursor.partial) > MAX_LINE_BYTES:
            self._sink(cursor.label, cursor.partial + b"\n")
            cursor.partial = b""

    @staticmethod
    def _first_line(fd: int) -> bytes:
        head = os.pread(fd, FINGERPRINT_BYTES, 0)
        newline = head.find(b"\n")
        if newline >= 0:
            return head[: newline + 1]
        return head if len(head) == FINGERPRINT_BYTES else b""
