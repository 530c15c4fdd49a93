"""RR's local wall-clock times as Unix time, and how a file's times compare with when it was written.

The worker reports what the module says (slot indexes, ``lastSave*``
values, day numbers); the daemon turns them into Unix time here, each time
on its own through ``zoneinfo``, and checks them against the file's
modification time. The rules (PEP 495 ``fold=0`` for DST, the stale-slot
limit, the tolerance) are specified in docs/royalrender.md.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Dict, Optional

#: a slot that started more than this many slot lengths before its reference is not current
STALE_SLOTS = 4
#: how far a file's newest time may lie from its modification time beyond one slot length
TOLERANCE_SECONDS = 300.0
#: RR's local times are plausible between 1970 and 2100; anything else is not a time
LATEST_LOCAL_SECONDS = 4102444800
_EPOCH = datetime.datetime(1970, 1, 1)


@dataclass(frozen=True)
class Written:
    """A file as the daemon saw it before asking the worker to read it: when it was written, in RR's zone."""

    mtime: float
    zone: datetime.tzinfo

    def unix(self, local_seconds: Optional[float]) -> Optional[float]:
        """The Unix time of RR's local wall-clock seconds; a repeated hour counts from its first occurrence,
        a skipped one with the offset before the switch (``fold=0``). None for what cannot be a time."""
        if local_seconds is None or not 0 <= local_seconds <= LATEST_LOCAL_SECONDS:
            return None
        wall = _EPOCH + datetime.timedelta(seconds=local_seconds)
        return wall.replace(tzinfo=self.zone).timestamp()

    def local(self, unix: float) -> float:
        """The local wall-clock seconds of a Unix time (the inverse of ``unix``)."""
        wall = datetime.datetime.fromtimestamp(unix, self.zone).replace(tzinfo=None)
        return (wall - _EPOCH).total_seconds()

    def day_start(self) -> float:
        """Local wall-clock seconds of the midnight that starts the local day of the modification time."""
        return self.local(self.mtime) // 86400 * 86400


def checked(newest: Optional[float], written: Written, slot_seconds: float, past_too: bool,
            what: str) -> Dict[str, Any]:
    """How ``newest`` (the latest time the file states, Unix) compares with the file's modification time.

    ``past_too``: a newest time far before the write is as wrong as one after
    it (a file that is rewritten with its newest slot each time); else only
    the future is implausible, the past just stale.
    """
    if newest is None:
        return {"offset": None, "implausible": None}
    offset = newest - written.mtime
    limit = TOLERANCE_SECONDS + slot_seconds
    wrong = offset > limit or (past_too and offset < -limit)
    return {"offset": offset, "implausible": _explain(offset, what) if wrong else None}


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
