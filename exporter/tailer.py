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
- a file that no longer holds what was read of it (its first line and the
  ``TAIL_BYTES`` before the offset, checked at every read as a checkpoint's
  cursors are checked at a restart) was truncated (copytruncate) or
  rewritten in place: it is read again from its start, as a new file, once.
  That includes a rewrite with the same first line, shorter or longer, and
  a file cut shorter in place, whose remaining lines are then counted again;
- a file replaced whole by a new inode with the same content plus more (rsync
  writes a temporary file and renames it over the old one) continues at the
  old offset, verified by the first line and the bytes before the offset;
- so does a file that comes back at its path after its folder went away (a
  share unmounted and mounted again) or after something else took its path
  (a FIFO, a device): the read position of a closed file whose folder is
  missing, unreadable or on another device, or whose path was taken, is
  remembered by path (a few hundred bytes each, the newest
  ``REMEMBERED_FILES``), and a
  reappearing file that continues it is not counted again; an incomplete
  last line it had is not counted when it goes (the writer may be in the
  middle of it): the file that comes back completes it. A file deleted
  from a folder that is still there is forgotten at once (a file re-created
  at its path is a new file), so churn leaves nothing behind; and a copy at
  the path of a file renamed away but kept
  (``rsync --backup``), which also takes over the kept file's incomplete last
  line, and its backlog if one is being read.

Complete lines are handed over in blocks as raw bytes; decoding and parsing
belong to the reader of the file kind. A line longer than ``MAX_LINE_BYTES``
is discarded up to its newline and reported once to ``discarded``, with its
bytes, so a file's bytes are accounted for exactly. Which lines are discarded
does not depend on where reads started (``CHUNK_BYTES <= MAX_LINE_BYTES``).

A big backlog (a cold start) can be read elsewhere: with ``defer_bytes``
set, a file with at least that many unread bytes is not read but handed to
``backlog`` as a ``Backlog`` (its cursor already moved to the end, and
skipped by further reads), which the owner reads with ``read_range``, in
ranges cut at line starts (``line_starts``), maybe in other processes, and
completes with ``caught_up`` (or, when the read failed, ``rewind``: the
bytes are read again later). ``save``/``load`` save and load every cursor
(a checkpoint).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections import OrderedDict
from contextlib import ExitStack, contextmanager
from itertools import count
from operator import attrgetter
from typing import Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Set, Tuple

from exporter import iogate
from exporter.containment import Containment, OutsideRoots
from exporter.iogate import MountBusy
from exporter.logs import fields

log = logging.getLogger(__name__)
_LABEL = attrgetter("label")  # of a cursor

CHUNK_BYTES = 1 << 20
FINGERPRINT_BYTES = 128
TAIL_BYTES = 64
MAX_LINE_BYTES = 1 << 20
RETIRE_GRACE_SECONDS = 2.0
REMEMBERED_FILES = 10000
_KEYS = count(1)  # FileKey: unique in the process, so keys of two tailers never meet either

Identity = Tuple[int, int]
#: Which physical file a block came from (``docs/plugins.md``): the same for every block of one file while it is
#: followed, renamed, replaced by a copy that continues it, or comes back; a new one for each other file (the new
#: file after a rotation, a file truncated or rewritten in place). Blocks of two keys are never one stream, even
#: under one label: a record begun in one file is not continued by another.
FileKey = int
#: ``sink(label, block, key)``: complete lines of the file ``key`` (``label``: the path it was first followed at).
BlockSink = Callable[[str, bytes, FileKey], None]
#: ``discarded(label, nbytes, new_line)``: bytes of an over-long line; ``new_line`` on its first part.
DiscardSink = Callable[[str, int, bool], None]


class Backlog(NamedTuple):
    """Unread bytes ``[start, end)`` of a file, handed over instead of read; ``ticket`` for ``caught_up``.

    ``partial`` and ``skipping`` are the line state at ``start`` (an incomplete
    line carried over, or the rest of an over-long line being discarded)."""

    ticket: int
    label: str
    path: str
    identity: Identity
    start: int
    end: int
    partial: bytes
    skipping: bool
    key: FileKey = 0


#: ``backlog(backlog, fd)``: a deferred read; ``fd`` (open during the call) is the file, to cut it into ranges.
BacklogSink = Callable[[Backlog, int], None]

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
    """``open_regular``, closed on exit; both through the path's mount (``exporter.iogate``)."""
    with _opened_taking(path) as (fd, st, _):
        assert fd is not None  # nothing taken: left open
        yield fd, st


@contextmanager
def _opened_taking(path: str, containment: Optional[Containment] = None, ahead: Optional[_Ahead] = None,
                   defer_bytes: Optional[int] = None) -> Iterator[Tuple[Optional[int], os.stat_result, Optional[_Got]]]:
    """``_open_and_take`` as one operation of the path's mount; a descriptor it left open is closed on exit."""
    fd, st, got = iogate.opened_by(_open_and_take, path, containment, ahead, defer_bytes)
    try:
        yield fd, st, got
    finally:
        if fd is not None:
            iogate.close(fd)


def _identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino)


def _folder_away(identity: Identity, folder: str) -> bool:
    """Whether the file ``identity`` is gone because ``folder`` went away: the folder is missing or cannot
    be looked at (a share unmounted), or it is now on another device than the file was (the empty mount
    point left by an unmounted share). False when it is there on the file's device: the file was deleted
    (or renamed away). ``MountBusy`` if the folder's mount does not answer (not known: it decides whether the
    file's incomplete last line is counted now, see ``Tailer._close``)."""
    try:
        return iogate.on_path(folder, os.stat, folder).st_dev != identity[0]
    except OSError:
        return True


def locate(identity: Identity, folder: str) -> Optional[str]:
    """The path under which the file ``identity`` is found in ``folder`` (a rename), or None (deleted);
    ``MountBusy`` if the folder's mount does not answer (not known)."""
    return iogate.on_path(folder, _locate, identity, folder)


def _locate(identity: Identity, folder: str) -> Optional[str]:
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.inode() == identity[1] and _identity(entry.stat(follow_symlinks=False)) == identity:
                    return entry.path
    except OSError:
        pass
    return None


class Seen(NamedTuple):
    """A followed file at its last read: its size and modification time, and the bytes past what was read."""

    size: int
    modified: float
    unread: int


class _Position(NamedTuple):
    """Where reading a closed file stopped: enough to recognise its content if it comes back, and the line
    state there: the length of its incomplete last line (the bytes before ``offset``, read again from the
    file that comes back: a position stays a few hundred bytes), or the rest of an over-long line to skip."""

    fingerprint: bytes
    offset: int
    tail: bytes
    partial: int = 0
    skipping: bool = False
    key: Optional[FileKey] = None  # the file's key while this process runs (not saved: keys are per process)


class _Cursor:
    """Read position in one file, reached through zero or more paths.

    ``where`` is the path a retired cursor (no matched path left) is read
    through: the name its file was renamed to.
    """

    __slots__ = ("identity", "offset", "partial", "skipping", "fingerprint", "tail", "paths", "label",
                 "retired_at", "where", "pending", "unchecked", "size", "modified", "key")

    def __init__(self, identity: Identity, label: str):
        self.identity = identity
        self.paths: Set[str] = set()
        self.label = label
        self.retired_at: Optional[float] = None
        self.where: Optional[str] = None
        #: Ticket of a backlog handed over and not caught up yet: the cursor is not read meanwhile.
        self.pending: Optional[int] = None
        #: Loaded from a checkpoint and not checked yet (``mismatched`` could not open it): its first read does.
        self.unchecked = False
        #: Size and modification time at its last read (``Tailer.seen``); None before one.
        self.size: Optional[int] = None
        self.modified: Optional[float] = None
        self.restart()

    def restart(self) -> None:
        """From the start of a new file (another key: what was read before is not continued by it)."""
        self.key = next(_KEYS)
        self.offset = 0
        self.partial = b""
        self.skipping = False
        self.fingerprint = b""
        self.tail = b""

    def position(self) -> _Position:
        return _Position(self.fingerprint, self.offset, self.tail, len(self.partial), self.skipping, self.key)


def _continues(fd: int, size: int, position: _Position) -> bool:
    """Whether the open file holds ``position``'s content (first line, bytes before its offset) and maybe more;
    one operation of its mount."""
    return size >= position.offset and iogate.on_fd(fd, _holds, fd, size, position)


def _holds(fd: int, size: int, position: _Position) -> bool:
    """``_continues``, on the calling thread."""
    return (size >= position.offset and os.pread(fd, len(position.fingerprint), 0) == position.fingerprint
            and os.pread(fd, len(position.tail), position.offset - len(position.tail)) == position.tail)


#: A read's cursor as it stands before the read: the identity of its file and its position in it.
_Ahead = Tuple[Identity, _Position]
#: At most this many files in one operation of ``Tailer.reading_ahead`` (a few milliseconds: far within its wait),
#: each with at most ``READ_AHEAD_FILE_BYTES`` to read, and no further operation once ``READ_AHEAD_BYTES`` were
#: read ahead: what waits for ``follow`` stays a few megabytes, and a bigger append is read by its ``follow``.
READ_AHEAD_FILES = 64
READ_AHEAD_FILE_BYTES = 64 << 10
READ_AHEAD_BYTES = 4 << 20
#: At most this many holes and pieces of data (and ``CHUNK_BYTES`` of data) in one operation: a read of a big
#: append or of a sparse file is cut into operations of bounded length, each waited for as any.
MAX_PIECES = 16


class _Got(NamedTuple):
    """What one operation read of a file for a cursor (``_take``); the ingest thread applies it to the cursor."""

    size: int  # its size and modification time when opened
    modified: float
    continues: bool  # it still holds what was read of it (else it was read from its start)
    deferred: bool  # at least ``defer_bytes`` of data unread: nothing read, a backlog to hand over
    pieces: List[Tuple[int, bytes]]  # after the position (0 if not ``continues``): holes (n, b"") and data (0, ...)
    more: bool  # stopped at the bound of one operation: more to read (``_pieces``) on the descriptor
    first_line: bytes  # its fingerprint, when the position has none (else b"")


def _open_and_take(path: str, containment: Optional[Containment], ahead: Optional[_Ahead],
                   defer_bytes: Optional[int], most: Optional[int] = None
                   ) -> Tuple[Optional[int], os.stat_result, Optional[_Got]]:
    """Reading a changed file as one operation of its mount (on the mount's thread): the containment checks, the
    open, and, if it is the file of ``ahead`` (the path's cursor), ``_take``: the descriptor is then closed here,
    unless more is to be done with it (a backlog to hand over, a read past one operation's bound). Else the
    descriptor is returned open and nothing read (a new file, a replacement: the tailer decides what to do; and,
    with ``most``, a file shorter than the cursor's offset or with more than ``most`` bytes after it)."""
    checked = containment.check(path) if containment is not None else None
    fd, st = open_regular(path)
    try:
        if containment is not None:
            containment.check_descriptor(fd, path, st, checked)
        wanted = (ahead is not None and _identity(st) == ahead[0]
                  and (most is None or 0 <= st.st_size - ahead[1].offset <= most))
        got = _take(fd, st, ahead[1], defer_bytes) if wanted and ahead is not None else None
    except BaseException:
        os.close(fd)
        raise
    if got is None or got.deferred or got.more:
        return fd, st, got
    os.close(fd)
    return None, st, got


def _take_each(reads: List[Tuple[str, _Ahead]], containment: Optional[Containment],
               defer_bytes: Optional[int]) -> List[Optional[_Got]]:
    """``_open_and_take`` of each file of ``reads`` (paths of one mount, and their cursors), on the mount's thread:
    what was read of each file read whole (its descriptor closed), else None (a file to open again, a new file, a
    backlog, a rewrite read from its start, an error: ``follow`` does it itself and reports what it finds)."""
    taken: List[Optional[_Got]] = []
    for path, ahead in reads:
        iogate.working_on(path)
        try:
            fd, _, got = _open_and_take(path, containment, ahead, defer_bytes, READ_AHEAD_FILE_BYTES)
        except Exception:  # noqa: BLE001 - found again, and reported, by the file's own ``follow``
            taken.append(None)
            continue
        if fd is not None:
            os.close(fd)
        taken.append(got if fd is None and got is not None and got.continues else None)  # a rewrite: its follow
    return taken


def _take(fd: int, st: os.stat_result, position: _Position, defer_bytes: Optional[int]) -> _Got:
    """Everything a read of a file needs of it, on its mount's thread: whether it still holds ``position``'s
    content, its data after the position up to the end it had when opened (``st``), or nothing if at least
    ``defer_bytes`` of it are data (holes aside: a backlog), and its first line if ``position`` has none."""
    size = st.st_size
    continues = not position.offset or _holds(fd, size, position)
    offset = position.offset if continues else 0
    deferred = (defer_bytes is not None and size - offset >= defer_bytes
                and iogate.raw_data_bytes(fd, offset, size, defer_bytes) >= defer_bytes)
    pieces, more = ([], False) if deferred or offset == size else _pieces(fd, offset, size)
    first_line = _first_line(fd) if size and (not continues or not position.fingerprint) else b""
    return _Got(size, st.st_mtime, continues, deferred, pieces, more, first_line)


def _pieces(fd: int, offset: int, size: int) -> Tuple[List[Tuple[int, bytes]], bool]:
    """Holes and data from ``offset`` to the end the file had when opened (``size``: an append since is a change
    of its own, an event, a poll), within one operation's bound; and whether there is more to read."""
    pieces: List[Tuple[int, bytes]] = []
    data = 0
    while data < CHUNK_BYTES and len(pieces) < MAX_PIECES:
        hole, chunk = iogate.raw_pread_data(fd, CHUNK_BYTES, offset)
        if hole:  # read in proportion to the data: a hole is skipped, not read
            pieces.append((hole, b""))
            offset += hole
            continue
        if not chunk:
            return pieces, False
        pieces.append((0, chunk))
        offset += len(chunk)
        data += len(chunk)
        if offset >= size and len(chunk) < CHUNK_BYTES:
            return pieces, False
    return pieces, True


def _first_line(fd: int) -> bytes:
    head = os.pread(fd, FINGERPRINT_BYTES, 0)
    newline = head.find(b"\n")
    if newline >= 0:
        return head[: newline + 1]
    return head if len(head) == FINGERPRINT_BYTES else b""


def _list(value: Any, where: str) -> List[Any]:
    if not isinstance(value, list):
        raise ValueError("%s: not a list" % where)
    return value


def _field(raw: Any, key: str, kind: Any, where: str) -> Any:
    """``raw[key]`` if it is of ``kind`` (a non-negative int for ``int``; bool is not an int here)."""
    value = raw.get(key) if isinstance(raw, dict) else None
    if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 0)):
        raise ValueError("%s.%s: not a %s" % (where, key, getattr(kind, "__name__", kind)))
    return value


def _loaded_cursor(raw: Any) -> Tuple[_Cursor, List[str]]:
    """A saved cursor and its paths; ValueError if it is not what ``Tailer.save`` writes."""
    where = "tailer.cursors[]"
    identity = _list(_field(raw, "identity", list, where), where + ".identity")
    if len(identity) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) for n in identity):
        raise ValueError(where + ".identity: not (device, inode)")
    paths = _list(_field(raw, "paths", list, where), where + ".paths")
    if not all(isinstance(path, str) for path in paths):
        raise ValueError(where + ".paths: not a list of paths")
    cursor = _Cursor((identity[0], identity[1]), _field(raw, "label", str, where))
    cursor.offset, cursor.skipping = _field(raw, "offset", int, where), _field(raw, "skipping", bool, where)
    cursor.partial, cursor.fingerprint, cursor.tail = (_bytes(_field(raw, key, str, where))
                                                       for key in ("partial", "fingerprint", "tail"))
    cursor.where = _field(raw, "where", (str, type(None)), where) or (None if paths else cursor.label)
    return cursor, paths


def _loaded_position(raw: Any) -> Tuple[str, _Position]:
    """A remembered position of a closed file: [label, fingerprint, offset, tail], and [partial, skipping]
    when the file stopped within a line."""
    if (not isinstance(raw, list) or len(raw) not in (4, 6) or not all(isinstance(raw[i], str) for i in (0, 1, 3))
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in raw[2:5:2])
            or len(raw) == 6 and (not isinstance(raw[5], bool) or raw[4] > raw[2] or raw[4] and raw[5])):
        raise ValueError("tailer.gone[]: not [label, fingerprint, offset, tail] (and [partial, skipping])")
    return raw[0], _Position(_bytes(raw[1]), raw[2], _bytes(raw[3]), *raw[4:])


def _text(raw: bytes) -> str:
    """Bytes as a JSON string that gives the same bytes back (``_bytes``)."""
    return raw.decode("latin-1")


def _bytes(text: str) -> bytes:
    return text.encode("latin-1")


class LineState:
    """Where cutting a stream into lines stands: an incomplete last line, or the rest of an over-long one."""

    __slots__ = ("partial", "skipping")

    def __init__(self, partial: bytes = b"", skipping: bool = False):
        self.partial = partial
        self.skipping = skipping


def emit(state: LineState | _Cursor, label: str, chunk: bytes, sink: BlockSink, discarded: DiscardSink,
         key: FileKey) -> None:
    """Hands the complete lines of ``state``'s carried bytes plus ``chunk`` to ``sink``; keeps the rest.

    A line whose content is longer than ``MAX_LINE_BYTES`` is discarded,
    whatever the chunks it arrived in: cut off while incomplete, or found
    complete at the start of the data (it began in the carried bytes)."""
    if state.skipping:
        chunk = _skip(state, label, chunk, discarded)
    carried = state.partial
    data = carried + chunk if carried else chunk
    if carried:
        newline = data.find(b"\n")
        if newline > MAX_LINE_BYTES:
            discarded(label, newline + 1, True)
            data = data[newline + 1 :]
    cut = data.rfind(b"\n")
    if cut < 0:
        state.partial = data
    else:
        state.partial = data[cut + 1 :]
        sink(label, data[: cut + 1], key)
    if len(state.partial) > MAX_LINE_BYTES:
        discarded(label, len(state.partial), True)
        state.partial, state.skipping = b"", True


def _skip(state: LineState | _Cursor, label: str, chunk: bytes, discarded: DiscardSink) -> bytes:
    """Discards the rest of an over-long line, up to and with its newline; returns what follows it."""
    newline = chunk.find(b"\n")
    end = len(chunk) if newline < 0 else newline + 1
    discarded(label, end, False)
    state.skipping = newline < 0
    return chunk[end:]


def skip_hole(state: LineState | _Cursor, label: str, nbytes: int, discarded: DiscardSink) -> None:
    """A hole of ``nbytes`` (a sparse file: bytes never written, no data on disk) is not a line: it ends the
    line before it. An incomplete line before it is discarded with the hole, one malformed line (the rest of
    an over-long line, already counted, only ends); a hole after a complete line is bytes and no line, and so
    are NUL bytes just before it (the rest of the file system block that holds the last data). Its bytes are
    reported to ``discarded``, so a file's bytes are still accounted for exactly."""
    discarded(label, len(state.partial) + nbytes, bool(state.partial.rstrip(b"\0")))
    state.partial, state.skipping = b"", False



class _CountedCursors(Dict[Identity, "_Cursor"]):
    """The cursors by file identity, counting the changes (a cursor's label never changes), so that the reader
    can tell in constant time after each sync that no followed file came or went."""

    changes = 0

    def __setitem__(self, identity: Identity, cursor: _Cursor) -> None:
        self.changes += 1
        super().__setitem__(identity, cursor)

    def __delitem__(self, identity: Identity) -> None:
        self.changes += 1
        super().__delitem__(identity)

    def clear(self) -> None:
        self.changes += 1
        super().clear()

class TailerClosed(RuntimeError):
    """The tailer was closed: it has no cursors left to save."""


class FileChanged(OSError):
    """The file of a backlog is no longer found (renamed away and deleted, or replaced)."""


def read_range(backlog: Backlog, start: int, end: int, state: LineState, sink: BlockSink,
               discarded: DiscardSink) -> None:
    """Reads ``[start, end)`` of the backlog's file (found by identity, also after a rename) into ``sink``."""
    with _opened_identity(backlog.path, backlog.identity) as fd:
        offset = start
        while offset < end:
            hole, chunk = iogate.pread_data(fd, min(CHUNK_BYTES, end - offset), offset)
            if hole:
                hole = min(hole, end - offset)
                offset += hole
                skip_hole(state, backlog.label, hole, discarded)
                continue
            if not chunk:
                raise FileChanged(errno.EIO, "file shrank while its backlog was read", backlog.path)
            offset += len(chunk)
            emit(state, backlog.label, chunk, sink, discarded, backlog.key)


@contextmanager
def _opened_identity(path: str, identity: Identity) -> Iterator[int]:
    """The file ``identity`` open, found at ``path`` or renamed in its folder. Only opening is retried
    elsewhere: an error while reading (even ENOENT, which a FUSE share may answer) is the caller's."""
    for candidate in (path, locate(identity, os.path.dirname(path))):
        if candidate is None:
            break
        with ExitStack() as attempt:
            try:
                fd, st = attempt.enter_context(opened(candidate))
            except FileNotFoundError:
                continue
            if _identity(st) != identity:
                continue
            found = attempt.pop_all()
        with found:
            yield fd
        return
    raise FileChanged(errno.ENOENT, "file gone before its backlog was read", path)


def line_starts(fd: int, start: int, end: int, parts: int) -> List[int]:
    """At most ``parts`` offsets cutting ``[start, end)`` into ranges of about equal size that begin at line
    starts (``start`` first); fewer when lines are longer than a range."""
    cuts = [start]
    for index in range(1, parts):
        cut = _line_start_after(fd, max(start + (end - start) * index // parts, cuts[-1]), end)
        if cut is None:
            break
        cuts.append(cut)
    return cuts


def _line_start_after(fd: int, position: int, end: int) -> Optional[int]:
    """The offset just after the first newline at or after ``position``, if it is before ``end``."""
    while position < end:
        hole, window = iogate.pread_data(fd, min(1 << 16, end - position), position)
        if hole:  # read in proportion to the data (a cut is after a newline: a hole ends no range)
            position += hole
            continue
        if not window:
            return None
        newline = window.find(b"\n")
        if newline >= 0:
            return position + newline + 1 if position + newline + 1 < end else None
        position += len(window)
    return None


class Tailer:
    """Follows a set of paths; ``sink(label, block, key)`` receives complete lines.

    ``label`` is the path a file was first opened under, so per-path
    statistics stay with one name while the file is renamed away; ``key``
    tells the files of one label apart (``FileKey``).
    Not thread-safe: one ingest thread owns it.
    """

    def __init__(self, sink: BlockSink, grace_seconds: float = RETIRE_GRACE_SECONDS,
                 discarded: DiscardSink = lambda label, nbytes, new_line: None,
                 backlog: Optional[BacklogSink] = None, containment: Optional[Containment] = None,
                 changed: Callable[[str], None] = lambda label: None):
        """``containment``: the roots a followed path must lead into (``exporter.containment``); None: any.
        ``changed(label)``: a loaded cursor that ``mismatched`` could not check was found changed at its first
        read, before its lines are read again (what ``mismatched`` returns for the others)."""
        self._sink = sink
        self._changed = changed
        self._containment = containment
        self._discarded = discarded
        self._backlog = backlog
        #: Files with at least this many unread bytes go to ``backlog`` instead of being read (None: never).
        self.defer_bytes: Optional[int] = None
        self._tickets = 0
        #: Per ticket: the cursor waiting for its backlog, and its tail before the hand-over (for ``rewind``).
        self._pending: Dict[int, Tuple[_Cursor, Backlog, bytes]] = {}
        self._grace = grace_seconds
        self._by_path: Dict[str, _Cursor] = {}
        self._by_identity: _CountedCursors = _CountedCursors()
        self._retired: List[_Cursor] = []
        self._gone: OrderedDict[str, _Position] = OrderedDict()
        #: Per path, within ``reading_ahead``: its cursor as it was read ahead, and what was read.
        self._read_ahead: Dict[str, Tuple[_Ahead, _Got]] = {}
        self.closed = False

    @property
    def paths(self) -> Set[str]:
        return set(self._by_path)

    def label_of(self, path: str) -> Optional[str]:
        cursor = self._by_path.get(path)
        return cursor.label if cursor else None

    def seen(self, label: str) -> Optional[Seen]:
        """The file ``label`` names as its last read found it, while a matched path leads to it; None before."""
        cursor = self._by_path.get(label)
        if cursor is None or cursor.label != label or cursor.size is None or cursor.modified is None:
            return None
        return Seen(cursor.size, cursor.modified, max(0, cursor.size - cursor.offset))

    def live_labels(self) -> Set[str]:
        """Labels of every followed file, including rotated ones still in their grace period."""
        return set(map(_LABEL, self._by_identity.values()))

    def live_keys(self) -> Set[FileKey]:
        """Keys of every followed file and of every closed file that may come back (its folder went away):
        a record in progress under any other key will never continue."""
        return {cursor.key for cursor in self._by_identity.values()} | {
            position.key for position in self._gone.values() if position.key is not None}

    @property
    def cursor_changes(self) -> int:
        """Grows whenever a followed file comes or goes: ``live_labels`` is the same while it stays."""
        return self._by_identity.changes

    @contextmanager
    def reading_ahead(self, paths: Iterable[str]) -> Iterator[None]:
        """Reads the followed files of ``paths`` whose cursor is not waiting for a backlog, in operations of up to
        ``READ_AHEAD_FILES`` files of one mount each (a hand-over to the mount's thread for many files instead of
        one per file); within the block, ``follow`` applies a file's result if its cursor has not moved since,
        else reads the file itself, as it does a file read ahead in vain (new, replaced, a backlog, an error).
        Nothing is applied here: a mount busy (``MountBusy``) skips its files, which ``follow`` finds busy."""
        ahead = {path: cursor for path in paths if (cursor := self._ahead(self._by_path.get(path))) is not None}
        read = 0
        for mount, group in iogate.by_mount(list(ahead)).items():
            reads = [(path, ahead[path]) for path in group]
            for first in range(0, len(reads), READ_AHEAD_FILES):
                if read >= READ_AHEAD_BYTES:
                    break
                batch = reads[first:first + READ_AHEAD_FILES]
                try:
                    taken = iogate.on_mount(mount, batch[0][0], _take_each, batch, self._containment,
                                            self._defer_bytes())
                except MountBusy:
                    continue
                for (path, cursor_ahead), got in zip(batch, taken):
                    if got is not None:
                        self._read_ahead[path] = (cursor_ahead, got)
                        read += sum(len(chunk) for _, chunk in got.pieces)
        try:
            yield
        finally:
            self._read_ahead.clear()

    def follow(self, path: str) -> None:
        """Reads what is new at ``path``. Raises OSError (``NotRegularFile``, ``OutsideRoots`` too) if it cannot
        be read.

        A path that became a FIFO, directory, ... or leads outside the roots no
        longer names the file it named: that file is forgotten (drained if it
        was renamed).
        """
        cursor = self._by_path.get(path)
        early = self._read_ahead.pop(path, None) if self._read_ahead else None
        if early is not None and cursor is not None and early[0] == self._ahead(cursor):
            self._read(cursor, None, early[1])
            return
        try:  # the path's file read in one operation of its mount, checks and open included, when it is the cursor's
            with _opened_taking(path, self._containment, self._ahead(cursor), self._defer_bytes()) as (fd, st, got):
                if got is not None:
                    assert cursor is not None
                    self._read(cursor, fd, got)
                else:
                    assert fd is not None
                    self._follow(path, fd, _identity(st))
        except (NotRegularFile, OutsideRoots):  # the path names something else now: the file may be put back
            self.forget(path, replaced=True)
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
        try:
            self._resume(cursor, path, fd)
        except MountBusy:  # not known whether it resumes: not followed yet, decided at a later read
            del self._by_identity[identity]
            del self._by_path[path]
            raise
        self._read(cursor, fd)

    def forget(self, path: str, replaced: bool = False) -> None:
        """``path`` no longer names a followed file: a renamed file drains, then closes; a deleted one closes.
        ``replaced``: the path names something else now (a FIFO, a device): the file may be put back."""
        cursor = self._by_path.pop(path, None)
        if cursor is None:
            return
        cursor.paths.discard(path)
        if cursor.paths:
            return
        try:
            cursor.where = locate(cursor.identity, os.path.dirname(path))
            if cursor.where is None:
                self._close(cursor, os.path.dirname(path), replaced)
        except MountBusy:  # not known yet: as if not forgotten, decided at a later read
            self._attach(cursor, path)
            raise
        if cursor.where is not None:
            cursor.retired_at = time.monotonic()
            self._retired.append(cursor)

    def drain_retired(self) -> None:
        """Reads the last lines of rotated files; closes those that stayed quiet."""
        now = time.monotonic()
        still: List[_Cursor] = []
        for cursor in self._retired:
            if cursor.paths:
                continue
            try:
                grew = self._read_retired(cursor)
            except MountBusy:  # its mount does not answer: kept, drained when it does
                still.append(cursor)
                continue
            if grew is not None and (grew or cursor.pending is not None  # its backlog's last line is not known yet
                                     or now - (cursor.retired_at or now) < self._grace):
                still.append(cursor)
            else:
                try:
                    self._close(cursor, os.path.dirname(cursor.where or cursor.label))
                except MountBusy:  # whether its folder went away is not known yet: closed at a later drain
                    still.append(cursor)
        self._retired = still

    def close(self) -> None:
        """Forgets every cursor; ``save`` refuses from now on (it would save no cursor at all)."""
        self._clear()
        self.closed = True

    def _clear(self) -> None:
        self._by_identity.clear()
        self._by_path.clear()
        self._retired.clear()

    def _attach(self, cursor: _Cursor, path: str) -> None:
        cursor.paths.add(path)
        cursor.retired_at = None
        cursor.where = None
        self._by_path[path] = cursor

    def _close(self, cursor: _Cursor, folder: Optional[str] = None, replaced: bool = False) -> None:
        """A file that may come back with more lines: its folder (``folder``, where it was last seen) went
        away with it (a share unmounted), or its path was taken by something else (``replaced``: a FIFO,
        a device, a link leading outside the roots). Its position is remembered with its incomplete last line
        (not counted now: the writer may be in the middle of it), which a file that comes back completes.
        A finished file, deleted from a folder that is still there, its path left free, or rotated away and
        drained: its last line counts even without a final newline, and it is forgotten (a file re-created at
        its path is a new file), so files that come and go leave nothing behind. ``MountBusy``, changing
        nothing, if the folder's mount does not answer (which of the two is not known yet)."""
        if replaced or _folder_away(cursor.identity, folder or os.path.dirname(cursor.label)):
            if cursor.fingerprint:  # else nothing to recognise it by: read from its start if it comes back
                self._gone[cursor.label] = cursor.position()
                self._gone.move_to_end(cursor.label)
                while len(self._gone) > REMEMBERED_FILES:
                    self._gone.popitem(last=False)
        elif cursor.partial:
            self._sink(cursor.label, cursor.partial + b"\n", cursor.key)
        cursor.partial = b""
        if self._by_identity.get(cursor.identity) is cursor:
            del self._by_identity[cursor.identity]
        log.debug("closed rotated or deleted file", extra=fields(path=cursor.label, bytes=cursor.offset))

    def _read_retired(self, cursor: _Cursor) -> Optional[int]:
        """Bytes read from a renamed file through the name it was found under; None once it is gone."""
        if cursor.where is None:  # not retired: forget() sets it, _attach() clears it with the paths
            return None
        try:
            with _opened_taking(cursor.where, None, self._ahead(cursor), self._defer_bytes()) as (fd, st, got):
                if _identity(st) != cursor.identity:
                    return None
                return self._read(cursor, fd, got)
        except OSError as exc:
            log.debug("rotated file gone", extra=fields(path=cursor.label, where=cursor.where, error=exc))
            return None

    def _continue_replacement(self, old: _Cursor, path: str, identity: Identity, fd: int) -> bool:
        """Whether a new inode at ``path`` is ``old``'s content plus more (rsync-style), and ``old`` is gone."""
        if (
            old.paths != {path}
            or not old.fingerprint
            or identity in self._by_identity
            or not _continues(fd, iogate.fstat(fd).st_size, old.position())
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
        """Starts a new file where an earlier file at ``path`` stopped, if it is that file's content plus more.

        A predecessor still renamed away hands over its incomplete last line (which the new file continues)
        and, if its backlog is being read, the wait for it: the new cursor reads on at its first read after
        ``caught_up`` (the next change or rescan)."""
        predecessor = next((c for c in self._retired if c.label == path and not c.paths), None)
        position: Optional[_Position]
        if predecessor is not None:
            self._read_retired(predecessor)
            if not predecessor.fingerprint:
                return
            position = predecessor.position()
        else:
            position = self._gone.get(path)
        if position is None or not _continues(fd, iogate.fstat(fd).st_size, position):
            return
        if predecessor is not None:
            self._retired.remove(predecessor)
            del self._by_identity[predecessor.identity]
            cursor.partial, cursor.skipping, cursor.pending = (predecessor.partial, predecessor.skipping,
                                                               predecessor.pending)
            cursor.key = predecessor.key
            if predecessor.pending is not None:
                _, backlog, tail = self._pending[predecessor.pending]
                self._pending[predecessor.pending] = (cursor, backlog, tail)
        else:  # its incomplete last line, as it was when it went: the bytes before the offset
            cursor.partial = (iogate.pread(fd, position.partial, position.offset - position.partial)
                              if position.partial else b"")
            cursor.skipping = position.skipping
            if position.key is not None:
                cursor.key = position.key
        self._gone.pop(path, None)
        cursor.fingerprint, cursor.offset, cursor.tail = position.fingerprint, position.offset, position.tail
        log.info("file came back with the lines already read; continuing after them",
                 extra=fields(path=path, offset=position.offset))

    def _ahead(self, cursor: Optional[_Cursor]) -> Optional[_Ahead]:
        """What a read of ``cursor``'s file in the operation that opens it needs; None: no read there."""
        return None if cursor is None or cursor.pending is not None else (cursor.identity, cursor.position())

    def _defer_bytes(self) -> Optional[int]:
        return self.defer_bytes if self._backlog is not None else None

    def _check_start(self, cursor: _Cursor, got: _Got) -> None:
        """Restarts a file that no longer holds what was read of it: truncated, or rewritten in place.

        The rule a checkpoint's cursors are checked by (``mismatched``), and a replacement or a file that came
        back (``_continues``): the first line and the ``TAIL_BYTES`` before the offset are still there. A file
        rewritten in place with the same first line, shorter or longer, fails it, and is a new file counted
        from its start, once; so is a file cut shorter in place (its lines that are left are counted again:
        they cannot be told from new ones). Costs two reads of at most ``FINGERPRINT_BYTES`` and
        ``TAIL_BYTES`` per read of a file, whatever its size, in the read's operation (``_take``).

        A cursor loaded from a checkpoint that ``mismatched`` could not check (its mount busy, the file not
        readable) is checked here, at its first read, as ``mismatched`` would have: if it changed, the whole
        label starts again and ``changed`` is told before any of its lines is read again."""
        if not got.continues:
            log.info("file truncated or rewritten in place; reading it from the start",
                     extra=fields(path=cursor.label, offset=cursor.offset, size=got.size))
            if cursor.unchecked:
                self._restart_label(cursor.label)
                self._changed(cursor.label)
            cursor.restart()
        cursor.unchecked = False

    def _read(self, cursor: _Cursor, fd: Optional[int], got: Optional[_Got] = None) -> int:
        """Consumes everything after the cursor; returns the number of bytes read (or handed over). ``got``: what
        the operation that opened the file read of it already (``_open_and_take``; ``fd`` None if it closed it);
        else the read is one operation on ``fd``. Reads first, changes after: an operation that does not return
        in time (``MountBusy``) leaves the cursor as it was after the last one that did."""
        if cursor.pending is not None:
            return 0
        if got is None:
            assert fd is not None
            got = iogate.on_fd(fd, _take, fd, iogate.fstat(fd), cursor.position(), self._defer_bytes())
        cursor.size, cursor.modified = got.size, got.modified
        self._check_start(cursor, got)
        start = cursor.offset
        if got.deferred:
            assert fd is not None
            self._hand_over(cursor, fd, got.size, got.first_line)
            return got.size - start
        pieces, more = got.pieces, got.more
        while True:
            for hole, chunk in pieces:
                if hole:
                    cursor.offset += hole
                    cursor.tail = (cursor.tail + bytes(min(hole, TAIL_BYTES)))[-TAIL_BYTES:]
                    skip_hole(cursor, cursor.label, hole, self._discarded)
                    continue
                cursor.offset += len(chunk)
                cursor.tail = (cursor.tail + chunk)[-TAIL_BYTES:]
                self._emit(cursor, chunk)
            if not more:
                break
            assert fd is not None  # left open by ``_open_and_take`` for the rest
            pieces, more = iogate.on_fd(fd, _pieces, fd, cursor.offset, got.size)
        if not cursor.fingerprint:  # also when a read cut short (MountBusy) after the data left none
            cursor.fingerprint = got.first_line
        return cursor.offset - start

    def _emit(self, cursor: _Cursor, chunk: bytes) -> None:
        emit(cursor, cursor.label, chunk, self._sink, self._discarded, cursor.key)

    def _hand_over(self, cursor: _Cursor, fd: int, size: int, first_line: bytes) -> None:
        """Gives the unread bytes to ``backlog``; the cursor moves to the end and waits for ``caught_up``.

        Reads first, changes after: a read that fails (or ``MountBusy``) leaves the cursor as it was."""
        tail = iogate.pread(fd, min(TAIL_BYTES, size), size - min(TAIL_BYTES, size))
        fingerprint = cursor.fingerprint or first_line
        self._tickets += 1
        backlog = Backlog(self._tickets, cursor.label, next(iter(cursor.paths), cursor.where or cursor.label),
                          cursor.identity, cursor.offset, size, cursor.partial, cursor.skipping, cursor.key)
        self._pending[backlog.ticket] = (cursor, backlog, cursor.tail)
        cursor.offset, cursor.partial, cursor.skipping = size, b"", False
        cursor.tail, cursor.fingerprint = tail, fingerprint
        cursor.pending = backlog.ticket
        assert self._backlog is not None
        try:
            self._backlog(backlog, fd)
        except BaseException:  # not handed over (its planning read failed): read again later
            self.rewind(backlog.ticket)
            raise

    # -- checkpoint ------------------------------------------------------------

    def save(self) -> Dict[str, object]:
        """Every cursor (identity, offset, incomplete line, fingerprint, paths) and the remembered positions,
        as JSON values; between syncs (no backlog pending). Raises ``TailerClosed`` after ``close``."""
        if self.closed:
            raise TailerClosed("closed: its cursors are gone, a checkpoint now would read every file again")
        cursors = [{"identity": list(c.identity), "offset": c.offset, "partial": _text(c.partial),
                    "skipping": c.skipping, "fingerprint": _text(c.fingerprint), "tail": _text(c.tail),
                    "paths": sorted(c.paths), "label": c.label, "where": c.where}
                   for c in self._by_identity.values() if c.pending is None]
        gone = [[label, _text(p.fingerprint), p.offset, _text(p.tail)] + ([p.partial, p.skipping]
                                                                          if p.partial or p.skipping else [])
                for label, p in self._gone.items()]
        return {"cursors": cursors, "gone": gone}

    def load(self, saved: Dict[str, Any]) -> None:
        """Replaces every cursor by those ``save`` returned; the next ``follow`` of each path checks its file.

        Raises ValueError, changing nothing, if ``saved`` does not have the shape ``save`` gives."""
        cursors = [_loaded_cursor(raw) for raw in _list(saved.get("cursors"), "tailer.cursors")]
        gone = [_loaded_position(raw) for raw in _list(saved.get("gone"), "tailer.gone")]
        if len({cursor.identity for cursor, _ in cursors}) != len(cursors):
            raise ValueError("tailer.cursors: one file twice")
        self._clear()
        self._gone.clear()
        for cursor, paths in cursors:
            self._by_identity[cursor.identity] = cursor
            for path in paths:
                self._attach(cursor, path)
            if not cursor.paths:
                cursor.retired_at = time.monotonic()
                self._retired.append(cursor)
        for label, position in gone:
            self._gone[label] = position

    def mismatched(self) -> List[str]:
        """Labels of loaded cursors whose file (same inode at one of its paths, or where a rotated file was
        found) no longer holds what was read: truncated or rewritten meanwhile. Every cursor of such a label
        starts again from the beginning (the reader drops the label's contribution), and a remembered
        position of the label is forgotten."""
        changed = set()
        for cursor in list(self._by_identity.values()):
            cursor.unchecked = True
            for path in sorted(cursor.paths) or [cursor.where or cursor.label]:
                try:
                    with opened(path) as (fd, st):
                        if _identity(st) == cursor.identity and not _continues(fd, st.st_size, cursor.position()):
                            changed.add(cursor.label)
                        cursor.unchecked = False
                        break
                except (OSError, MountBusy):  # not checked here: its first read does (_check_start, ``changed``)
                    continue
        for label in changed:
            self._restart_label(label)
        return sorted(changed)

    def _restart_label(self, label: str) -> None:
        """Every cursor of ``label`` starts again from the beginning, and its remembered position is forgotten:
        the reader drops the label's contribution (a file changed while the exporter was stopped)."""
        for cursor in self._by_identity.values():
            if cursor.label == label:
                cursor.restart()
                cursor.unchecked = False
        self._gone.pop(label, None)

    def caught_up(self, ticket: int, state: LineState) -> None:
        """The backlog ``ticket`` was read up to its end, leaving ``state`` (its last incomplete line)."""
        cursor, _, _ = self._pending.pop(ticket)
        cursor.partial, cursor.skipping, cursor.pending = state.partial, state.skipping, None

    def rewind(self, ticket: int) -> None:
        """The backlog ``ticket`` was not read (its read failed): the cursor goes back to where the backlog
        started, and the next ``follow`` reads those bytes."""
        cursor, backlog, tail = self._pending.pop(ticket)
        cursor.offset, cursor.partial, cursor.skipping, cursor.tail = (backlog.start, backlog.partial,
                                                                       backlog.skipping, tail)
        cursor.pending = None
