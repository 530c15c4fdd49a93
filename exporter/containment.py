"""Files are read only inside the configured folders: the one rule for symlinks that lead out.

A matched path is read only if it resolves inside a *root* of its reader:
the fixed folder of one of the reader's patterns (``PathPattern.root``),
itself resolved once, at the reader's first check (on its ingest's
thread, so a root on a share that does not answer never holds up a start
or a reload; a root that does not exist yet is resolved when it appears). A symlink
from one configured folder to a file under a root works; one that leads
anywhere else (``/etc/shadow``, a home folder) is refused with
``OutsideRoots``, before the file is opened, and again on the open
descriptor (its ``/proc/self/fd`` link), so a symlink swapped in between
the check and the open is refused too. Refusals are logged once per path
(and at most once a minute in all, with a count of those not named).

``watch.follow_symlinks_outside: true`` (``follow_outside``, set for the
whole process by the pipeline from the configuration) turns the rule off.

Not caught: a hard link inside a root to a file elsewhere (it has no
"outside" to resolve to: ``fs.protected_hardlinks``, on by default, keeps
users from linking files they do not own).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from typing import Dict, Iterable, List, Optional, Set, Tuple

from exporter.logs import RateLimitedLog
from exporter.paths import PathPattern

log = logging.getLogger(__name__)

#: The ``reason`` label of ``renderfarm_exporter_source_read_failures_total`` for a refusal.
OUTSIDE = "outside"
OUTSIDE_REASON = "refused: the path leads outside the configured folders (watch.follow_symlinks_outside)"
_DELETED = " (deleted)"
#: Folders whose identity a containment remembers, at most (all forgotten past it: a bound, not a policy).
MAX_KNOWN_FOLDERS = 100_000

_follow_outside = False


def follow_outside(enabled: bool) -> None:
    """``watch.follow_symlinks_outside``: whether paths may lead outside their roots, for every reader."""
    global _follow_outside
    _follow_outside = bool(enabled)


def following_outside() -> bool:
    return _follow_outside


class OutsideRoots(OSError):
    """A matched path resolves outside every root of its reader; it is not read."""

    def __init__(self, path: str, resolved: str):
        super().__init__(errno.EACCES, OUTSIDE_REASON, path)
        self.resolved = resolved


def inside(resolved: str, root: str) -> bool:
    """Whether the absolute, resolved ``resolved`` is ``root`` or below it."""
    return resolved == root or resolved.startswith(root if root.endswith("/") else root + "/")


def _identity(st: os.stat_result) -> Tuple[int, int]:
    return st.st_dev, st.st_ino


class _Root:
    __slots__ = ("folder", "resolved")

    def __init__(self, folder: str):
        self.folder = folder
        self.resolved: Optional[str] = None

    def resolve(self) -> str:
        """The folder resolved, once it exists (until then, resolved again at every call)."""
        if self.resolved is not None:
            return self.resolved
        resolved = os.path.realpath(self.folder)
        if os.path.isdir(resolved):
            self.resolved = resolved
        return resolved


class Containment:
    """The roots of one reader's patterns, and the check of a path against them."""

    def __init__(self, patterns: Iterable[PathPattern]):
        self._roots: List[_Root] = [_Root(folder) for folder in sorted({p.root for p in patterns})]
        self._lock = threading.Lock()
        self._refused: Set[str] = set()
        #: Folders of checked paths found inside a root: their (device, inode) then.
        self._folders: Dict[str, Tuple[int, int]] = {}
        self._log = RateLimitedLog(log)

    def _inside(self, resolved: str) -> bool:
        return any(inside(resolved, root.resolve()) for root in self._roots)

    def check(self, path: str) -> Optional[Tuple[int, int]]:
        """Raises ``OutsideRoots`` if ``path`` resolves outside every root (before it is opened). Returns the
        file's (device, inode) when it is no symlink in a folder found inside a root before and still the same
        directory, looked up through a descriptor of that directory (a few system calls instead of ``realpath``'s
        one per component, pure Python: the largest cost of a read; by path, a folder flipped with a symlink out
        between the calls handed over an outside file's identity); ``check_descriptor`` then needs only compare
        it. A folder renamed away since keeps its identity and is still read: its files are those the root held,
        never another file."""
        if _follow_outside:
            return None
        known = self._in_known_folder(path)
        if known is None:
            resolved = os.path.realpath(path)
            if not self._inside(resolved):
                self._refuse(path, resolved)
            self._know_folder(os.path.dirname(path))
        self.forget(path)
        return known

    def _in_known_folder(self, path: str) -> Optional[Tuple[int, int]]:
        folder = os.path.dirname(path)
        known = self._folders.get(folder)
        if known is None:
            return None
        try:  # the file looked up in the folder's descriptor: a path resolves the folder anew at each call
            folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            if _identity(os.fstat(folder_fd)) != known:
                return None
            found = os.stat(os.path.basename(path), dir_fd=folder_fd, follow_symlinks=False)
        except OSError:
            return None
        finally:
            os.close(folder_fd)
        return None if stat.S_ISLNK(found.st_mode) else _identity(found)

    def _know_folder(self, folder: str) -> None:
        """Remembers ``folder``'s identity if the directory it opens to is inside a root (where its descriptor
        leads, not its path resolved again: a folder flipped with a symlink out in between had its outside
        identity remembered). Without ``/proc`` nothing is remembered: every check takes ``realpath``."""
        try:
            folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            if self._inside(os.readlink("/proc/self/fd/%d" % folder_fd)):
                if len(self._folders) >= MAX_KNOWN_FOLDERS:
                    self._folders.clear()
                self._folders[folder] = _identity(os.fstat(folder_fd))
        except OSError:
            pass
        finally:
            os.close(folder_fd)

    def check_descriptor(self, fd: int, path: str, fd_stat: Optional[os.stat_result] = None,
                         checked: Optional[Tuple[int, int]] = None) -> None:
        """Raises ``OutsideRoots`` if the file open at ``fd`` (opened through ``path`` after ``check``) is not
        under a root: a symlink swapped in between ``check`` and the open is caught here. ``fd_stat`` (its
        fstat) being the file ``check`` found (``checked``) is enough: that file was inside."""
        if _follow_outside or checked is not None and fd_stat is not None and _identity(fd_stat) == checked:
            return
        try:
            link = os.readlink("/proc/self/fd/%d" % fd)
        except OSError:  # no /proc: the file at the resolved path must be the one open
            resolved = os.path.realpath(path)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(resolved))
            except OSError:
                same = False
            if not same or not self._inside(resolved):
                self._refuse(path, resolved)
            self.forget(path)
            return
        if link.endswith(_DELETED):
            link = link[: -len(_DELETED)]  # deleted since it was opened: the name it had
        if not self._inside(link):
            self._refuse(path, link)
        self.forget(path)

    def forget(self, path: str) -> None:
        """``path`` was found inside, or names nothing any more: nothing is kept of a refusal of it (a later one
        is logged again)."""
        if path in self._refused:
            with self._lock:
                self._refused.discard(path)

    def _refuse(self, path: str, resolved: str) -> None:
        with self._lock:
            first = path not in self._refused
            self._refused.add(path)
        if first:
            self._log.warning(OUTSIDE, "file refused: it leads outside the configured folders; set "
                              "watch.follow_symlinks_outside to read it", path=path, resolved=resolved)
        raise OutsideRoots(path, resolved)
