"""Finding every process the vendor module started, so none outlives the worker that started it.

A module may fork and call ``setsid()``: its child then leaves the worker's
process group, and killing the group misses it. Two marks find it anyway:
descent from the worker (the parent links in ``/proc``, read while the
worker still lives) and an environment variable with a token of the
worker's own, which children inherit. Linux only; elsewhere nothing is found.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Dict, Iterable, List, Optional, Set

#: the variable the worker and everything it starts carry, with a token naming that worker
MARK = "RENDERFARM_EXPORTER_RR_WORKER"
REAP_SECONDS = 1.0


def _parents() -> Dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    parents = {}
    for name in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as handle:
                parents[int(name)] = int(handle.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return parents


def _marked(pid: int, mark: bytes) -> bool:
    try:
        with open("/proc/%d/environ" % pid, "rb") as handle:
            return mark in handle.read().split(b"\0")
    except OSError:  # gone, or another user's
        return False


def descendants(root: int, token: str) -> Set[int]:
    """Processes below ``root``, and any process carrying ``token`` (one whose parent already died)."""
    parents = _parents()
    children: Dict[int, List[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found | marked(token, parents)


def marked(token: str, parents: Optional[Dict[int, int]] = None) -> Set[int]:
    """Processes carrying ``token`` in their environment: safe after the worker is reaped, when its pid may
    name another process already."""
    mark = ("%s=%s" % (MARK, token)).encode()
    return {pid for pid in (_parents() if parents is None else parents) if pid != os.getpid() and _marked(pid, mark)}


def kill(pids: Iterable[int]) -> None:
    """SIGKILLs ``pids`` and reaps those that are the daemon's children (orphans it inherited)."""
    pending = set()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            pending.add(pid)
        except OSError:
            continue
    deadline = time.monotonic() + REAP_SECONDS
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not ours: its parent (or init) reaps it
                pending.discard(pid)
                continue
            if done:
                pending.discard(pid)
        if pending:
            time.sleep(0.01)
