"""A one-file FUSE file system served from the test process, whose reads can be made to hang or fail.

It speaks the kernel's FUSE protocol on ``/dev/fuse`` directly (no libfuse
needed): a real mount, so a reader in another process blocks in ``pread``
exactly as on a share whose server stopped answering. Reads bypass the page
cache (``FOPEN_DIRECT_IO``), so every read reaches this server.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
import struct
import subprocess
import threading
from typing import Dict, List, Optional, Tuple

_IN_HEADER = struct.Struct("<IIQQIIIHH")
_OUT_HEADER = struct.Struct("<IiQ")
_ATTR = struct.Struct("<QQQQQQIIIIIIIIII")
_ENTRY = struct.Struct("<QQQQII")
_ATTR_OUT = struct.Struct("<QII")
_INIT_IN = struct.Struct("<IIII")
_INIT_OUT = struct.Struct("<IIIIHHIIHHI7I")
_OPEN_OUT = struct.Struct("<QII")
_READ_IN = struct.Struct("<QQI")
LOOKUP, FORGET, GETATTR, OPEN, READ, RELEASE, FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR, BATCH_FORGET = (
    1, 2, 3, 14, 15, 18, 25, 26, 27, 28, 29, 42)
_DIRENT = struct.Struct("<QQII")
_NO_REPLY = {FORGET, BATCH_FORGET}
FOPEN_DIRECT_IO = 1
ROOT, FILE = 1, 2


class HangingFile:
    """Mounts at ``mountpoint`` a folder holding one file ``name`` with ``content`` (and ``others``, name ->
    content, beside it).

    While ``hang`` is set, reads are not answered; clearing it answers them.
    While ``failing`` is ``(errno, start, end)``, reads of any byte in ``[start, end)`` fail with that errno
    (of the first file).
    """

    def __init__(self, mountpoint: str, name: str, content: bytes, others: Optional[Dict[str, bytes]] = None):
        self.mountpoint = mountpoint
        self.name = name.encode()
        self.content = content
        self.others = {key.encode(): value for key, value in (others or {}).items()}
        self.hang = threading.Event()
        self.reads_waiting = 0
        self.failing: Optional[Tuple[int, int, int]] = None
        self._held: List[bytes] = []
        self._lock = threading.Lock()
        self._fd = os.open("/dev/fuse", os.O_RDWR)
        options = "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other" % self._fd
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.mount(b"hangfs", mountpoint.encode(), b"fuse.hangfs", 0, options.encode()) != 0:
            raise OSError(ctypes.get_errno(), "mount fuse", mountpoint)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stops hanging and answers the reads that waited."""
        with self._lock:
            self.hang.clear()
            held, self._held = self._held, []
        for request in held:
            self._answer_read(request)

    def close(self) -> None:
        self.release()
        subprocess.run(["umount", "-l", self.mountpoint], check=False)
        os.close(self._fd)

    def _serve(self) -> None:
        while True:
            try:
                request = os.read(self._fd, 1 << 20)
            except OSError as exc:
                if exc.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                    continue
                return  # unmounted
            _, opcode, unique, *_ = _IN_HEADER.unpack_from(request)
            if opcode == READ:
                with self._lock:
                    if self.hang.is_set():
                        self._held.append(request)
                        self.reads_waiting += 1
                        continue
                self._answer_read(request)
            elif opcode not in _NO_REPLY:
                self._reply(unique, *self._answer(opcode, request))

    def _answer(self, opcode: int, request: bytes):
        body = request[_IN_HEADER.size:]
        nodeid = _IN_HEADER.unpack_from(request)[3]
        if opcode == INIT:
            major, minor, readahead, _ = _INIT_IN.unpack_from(body)
            return 0, _INIT_OUT.pack(7, 31, readahead, 0, 16, 12, 1 << 17, 1, 0, 0, 0, *([0] * 7))
        if opcode == LOOKUP:
            node = self._node_of(body.rstrip(b"\0")) if nodeid == ROOT else None
            if node is None:
                return -errno.ENOENT, b""
            return 0, _ENTRY.pack(node, 0, 0, 0, 0, 0) + self._attr(node)
        if opcode == GETATTR:
            return 0, _ATTR_OUT.pack(0, 0, 0) + self._attr(nodeid)
        if opcode in (OPEN, OPENDIR):
            return 0, _OPEN_OUT.pack(1, FOPEN_DIRECT_IO if opcode == OPEN else 0, 0)
        if opcode == READDIR:
            _, offset, size = _READ_IN.unpack_from(body)
            return 0, self._listing(offset, size)
        if opcode in (RELEASE, RELEASEDIR, FLUSH):
            return 0, b""
        return -errno.ENOSYS, b""

    def _listing(self, offset: int, size: int) -> bytes:
        """The folder's entries after the ``offset``-th, as many as fit in ``size`` bytes (a share is listed
        by a polled watch)."""
        entries = [(ROOT, b".", stat.S_IFDIR), (ROOT, b"..", stat.S_IFDIR), (FILE, self.name, stat.S_IFREG)]
        entries += [(FILE + 1 + i, name, stat.S_IFREG) for i, name in enumerate(self.others)]
        listing = b""
        for index, (node, name, kind) in enumerate(entries[offset:], start=offset + 1):
            entry = _DIRENT.pack(node, index, len(name), kind >> 12) + name
            entry += b"\0" * (-len(entry) % 8)
            if len(listing) + len(entry) > size:
                break
            listing += entry
        return listing

    def _node_of(self, name: bytes) -> Optional[int]:
        if name == self.name:
            return FILE
        names = list(self.others)
        return FILE + 1 + names.index(name) if name in self.others else None

    def _content(self, nodeid: int) -> bytes:
        if nodeid == FILE:
            return self.content
        return list(self.others.values())[nodeid - FILE - 1]

    def _attr(self, nodeid: int) -> bytes:
        if nodeid == ROOT:
            return _ATTR.pack(ROOT, 0, 0, 0, 0, 0, 0, 0, 0, stat.S_IFDIR | 0o755, 2, 0, 0, 0, 4096, 0)
        size = len(self._content(nodeid))
        return _ATTR.pack(nodeid, size, (size + 511) // 512, 0, 0, 0, 0, 0, 0, stat.S_IFREG | 0o644, 1, 0, 0, 0,
                          4096, 0)

    def _answer_read(self, request: bytes) -> None:
        unique, nodeid = _IN_HEADER.unpack_from(request)[2:4]
        _, offset, size = _READ_IN.unpack_from(request, _IN_HEADER.size)
        failing = self.failing if nodeid == FILE else None
        if failing is not None and offset < failing[2] and failing[1] < offset + size:
            self._reply(unique, -failing[0], b"")
        else:
            self._reply(unique, 0, self._content(nodeid)[offset:offset + size])

    def _reply(self, unique: int, error: int, body: bytes) -> None:
        try:
            os.write(self._fd, _OUT_HEADER.pack(_OUT_HEADER.size + len(body), error, unique) + body)
        except OSError:
            pass  # the request was interrupted, or the file system unmounted
