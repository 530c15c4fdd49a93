"""RR's local wall-clock times as Unix time, and how a file's times compare with when it was written.

The worker reports what the module says (slot indexes, ``lastSave*``
values, day numbers); the daemon turns them into Unix time here, each time
on its own through ``zoneinfo``, and checks them against the file's
modification time. The rules (PEP 495 ``fold=0`` for DST, the stale-slot
limit, the tolerance) are specified in docs/royalrender.md.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Any, Dict, Optional

from exporter.royalrender.vendor.calls import LATEST_LOCAL_SECONDS, STALE_SLOTS

#: how far a file's newest time may lie from its modification time beyond one slot length
TOLERANCE_SECONDS = 300.0
_EPOCH = datetime.datetime(1970, 1, 1)


class NotATime(ValueError):
    """A file's modification time that no calendar date holds (past year 9999): its times cannot be checked."""


@dataclass(frozen=True)
class Written:
    """A file as the daemon saw it before asking the worker to read it: when it was written, in RR's zone."""

    mtime: float
    zone: datetime.tzinfo

    def __post_init__(self) -> None:
        try:
            self.local(self.mtime)
        except (ValueError, OverflowError, OSError):
            raise NotATime("its modification time %.0f is not a date" % self.mtime) from None

    def unix(self, local_seconds: Optional[float]) -> Optional[float]:
        """The Unix time of RR's local wall-clock seconds, None for what cannot be a time.

        A time that occurs twice (the hour repeated in autumn) is its latest
        occurrence not after the write (RR overwrites what the first pass
        wrote), or its first when both are after; one that does not exist (the
        hour skipped in spring) is read with the offset in force before it.
        """
        if local_seconds is None or not 0 <= local_seconds <= LATEST_LOCAL_SECONDS:
            return None
        wall = _EPOCH + datetime.timedelta(seconds=local_seconds)
        first, second = (wall.replace(tzinfo=self.zone, fold=fold).timestamp() for fold in (0, 1))
        if first == second or not self._occurs(wall, second):  # unambiguous, or skipped (no occurrence)
            return first
        return second if second <= self.mtime + TOLERANCE_SECONDS else first

    def _occurs(self, wall: datetime.datetime, unix: float) -> bool:
        return datetime.datetime.fromtimestamp(unix, self.zone).replace(tzinfo=None) == wall

    def local(self, unix: float) -> float:
        """The local wall-clock seconds of a Unix time (the inverse of ``unix``)."""
        wall = datetime.datetime.fromtimestamp(unix, self.zone).replace(tzinfo=None)
        return (wall - _EPOCH).total_seconds()

    def day_start(self) -> float:
        """Local wall-clock seconds of the midnight that starts the local day of the modification time."""
        return self.local(self.mtime) // 86400 * 86400


#: what ``checked`` takes for a time the file states that is none (``Written.unix`` gave None for it)
NOT_A_TIME = math.nan


def checked(newest: Optional[float], written: Written, slot_seconds: float, past_too: bool,
            what: str) -> Dict[str, Any]:
    """How ``newest`` (the latest time the file states, Unix; None: it states none; ``NOT_A_TIME``: what it
    states is not a time) compares with the file's modification time.

    ``past_too``: a newest time far before the write is as wrong as one after
    it (a file that is rewritten with its newest slot each time); else only
    the future is implausible, the past just stale.
    """
    if newest is None:
        return {"offset": None, "implausible": None}
    if math.isnan(newest):
        return {"offset": None, "implausible": "%s is not a time between 1970 and 2100" % what}
    offset = newest - written.mtime
    limit = TOLERANCE_SECONDS + slot_seconds
    wrong = offset > limit or (past_too and offset < -limit)
    return {"offset": offset, "implausible": _explain(offset, what) if wrong else None}


def current(start: Optional[float], reference: float, slot_seconds: float, bounded_after: bool = False) -> bool:
    """A slot that started at most ``STALE_SLOTS`` slot lengths before ``reference`` (the write, or the last save).

    ``bounded_after``: and not after it either (a server slot after its last save is another day's); a
    daily or client slot after the write is a clock or zone error, flagged by ``checked``, not withheld.
    """
    if start is None or start < reference - STALE_SLOTS * slot_seconds:
        return False
    return not bounded_after or start <= reference + TOLERANCE_SECONDS


def _explain(offset: float, what: str) -> str:
    hours = abs(offset) / 3600
    direction = "after" if offset > 0 else "before"
    text = "%s is %s %s the file was written" % (what, _duration(abs(offset)), direction)
    if round(hours) >= 1 and abs(hours - round(hours)) < 0.1:
        return text + ": a whole number of hours, so RR's time zone is probably not royalrender.timezone"
    return text + ": RR's clock or the time base (60 or 90 s per lastSaveDay step) is not what the exporter assumes"


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return "%.0f days" % (seconds / 86400)
    if seconds >= 3000:
        return "%.1f h" % (seconds / 3600)
    return "%.0f min" % (seconds / 60)
