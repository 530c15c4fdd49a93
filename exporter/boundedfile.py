"""Reading a small file whose path someone else controls: a regular file only, a size cap, a deadline.

The configuration file, the web config file (and the certificates it names)
and the checkpoints are read through ``read_regular``:

- the file is opened with ``O_NONBLOCK | O_NOCTTY``, so a FIFO (no writer),
  a terminal or a device at the path cannot block the ``open()``; its type
  is then checked on the descriptor (``fstat``), not the path, so a swap
  between a check and the open cannot get past it: a FIFO, a device
  (``/dev/zero`` through a symlink), a directory or a socket is refused with
  what it is;
- at most ``max_bytes`` are read: a bigger file is refused, however fast it
  grows while being read;
- with a ``timeout``, the open and the read run on a thread of their own,
  joined for that long: a read that hangs (a hard-mounted share whose server
  stopped answering) is abandoned and reported as ``ReadTimedOut``, and the
  caller goes on. The stuck thread cannot be interrupted; until its read
  returns, the same path is not tried again (``ReadTimedOut`` at once), so a
  hung share costs one thread, not one per attempt. ``stuck_reads`` lists
  them, for the health check.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from typing import Dict, List, Optional, Tuple

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
_FILE_TYPES = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
_CHUNK = 1 << 20


class ReadTimedOut(OSError):
    """The read did not finish within its deadline (or an earlier one of the same path still hangs)."""


_lock = threading.Lock()
#: Paths whose abandoned read has not returned yet -> monotonic time that read started.
_stuck: Dict[str, float] = {}


def read_regular(path: str, max_bytes: int, *, follow_symlinks: bool = True,
                 timeout: Optional[float] = None) -> bytes:
    """The content of the regular file at ``path``, at most ``max_bytes``; OSError (with why) else.

    ``follow_symlinks=False`` refuses a symlink at the path itself (``O_NOFOLLOW``).
    ``timeout``: seconds the open and read may take (None: read in the calling thread, with no deadline).
    """
    if timeout is None:
        return _read(path, max_bytes, follow_symlinks)
    with _lock:
        since = _stuck.get(path)
    if since is not None:
        raise ReadTimedOut(errno.ETIMEDOUT, "a read of it abandoned %.0f s ago has not returned yet (a hung share?); "
                                            "not tried again until it does" % (time.monotonic() - since), path)
    started = time.monotonic()
    outcome: Dict[str, object] = {}
    state = {"done": False}

    def run() -> None:
        try:
            outcome["data"] = _read(path, max_bytes, follow_symlinks)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
            outcome["error"] = exc
        finally:
            with _lock:
                state["done"] = True
                if _stuck.get(path) == started:
                    del _stuck[path]

    thread = threading.Thread(target=run, name="read-file", daemon=True)
    thread.start()
    thread.join(timeout)
    with _lock:
        if not state["done"]:
            _stuck[path] = started
            raise ReadTimedOut(errno.ETIMEDOUT, "not read within %g s (a hung share?): abandoned; not tried again "
                                                "until that read returns" % timeout, path)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["data"]  # type: ignore[return-value]


def stuck_reads(paths: Optional[Tuple[str, ...]] = None) -> List[Tuple[str, float]]:
    """(path, seconds) of every abandoned read that has not returned yet (of ``paths`` only, if given)."""
    now = time.monotonic()
    with _lock:
        return sorted((path, now - since) for path, since in _stuck.items() if paths is None or path in paths)


def _read(path: str, max_bytes: int, follow_symlinks: bool) -> bytes:
    fd = os.open(path, _FLAGS if follow_symlinks else _FLAGS | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            what = next((name for test, name in _FILE_TYPES if test(st.st_mode)), "something else")
            raise OSError(errno.EINVAL, "refused: %s, not a regular file" % what, path)
        if st.st_size > max_bytes:
            raise OSError(errno.EFBIG, "refused: larger than %d bytes" % max_bytes, path)
        chunks = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, _CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise OSError(errno.EFBIG, "refused: larger than %d bytes" % max_bytes, path)
        return b"".join(chunks)
    finally:
        os.close(fd)
