"""Which file system a folder lives on, to choose inotify or polling.

inotify only sees writes made by the local kernel: on network file systems
the writes of other machines produce no events, so those folders are polled.
"""

from __future__ import annotations

import os
from typing import List, Tuple

NETWORK_FSTYPES = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "afs", "gpfs",
        "beegfs", "davfs", "virtiofs", "fuse.sshfs", "fuse.glusterfs", "fuse.cephfs", "fuse.rclone",
        "fuse.s3fs", "fuse.gcsfuse", "fuse.davfs", "fuse.smbnetfs", "fuse.juicefs",
    }
)


def _unescape(field: str) -> str:
    """mountinfo escapes blanks and backslashes as octal (``\\040``)."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def read_mounts(mountinfo: str = "/proc/self/mountinfo") -> List[Tuple[str, str]]:
    """(mount point, fstype) pairs; empty if the mount table cannot be read."""
    mounts = []
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                before, _, after = line.partition(" - ")
                left, right = before.split(), after.split()
                if len(left) >= 5 and right:
                    mounts.append((_unescape(left[4]), right[0]))
    except OSError:
        return []
    return mounts


def fstype_of(path: str, mounts: List[Tuple[str, str]]) -> str:
    """The fstype of the longest mount point containing ``path`` ("unknown" if none)."""
    real = os.path.realpath(path)
    best, fstype = "", "unknown"
    for point, kind in mounts:
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, kind
    return fstype


def is_network(fstype: str) -> bool:
    return fstype in NETWORK_FSTYPES
