"""``royalrender.timezone``: the zone in which RR writes its local times.

RR stores most times as local wall-clock seconds of the RR server's zone.
The exporter converts them in the worker, so the worker runs in that zone:
``TZ`` points at the zone's file, from the system's database or, where a
slim container has none, from the ``tzdata`` package. Without the key the
worker keeps the machine's zone (and ``TZ``, if set).
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
from dataclasses import dataclass
from typing import Dict, Optional

SYSTEM_ZONEINFO = "/usr/share/zoneinfo"


def _zone(name: str) -> datetime.tzinfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("unknown time zone %r (an IANA name such as Europe/Berlin): %s" % (name, exc)) from None


def _zone_file(name: str) -> str:
    """The TZif file of ``name``: the system's, else the ``tzdata`` package's."""
    system = os.path.join(SYSTEM_ZONEINFO, name)
    if os.path.isfile(system):
        return system
    import importlib.resources

    try:
        packaged = importlib.resources.files("tzdata.zoneinfo").joinpath(*name.split("/"))
    except ModuleNotFoundError:
        raise ValueError("no zone file for %r: neither %s nor the tzdata package has it"
                         % (name, SYSTEM_ZONEINFO)) from None
    if not packaged.is_file():
        raise ValueError("no zone file for %r in %s or the tzdata package" % (name, SYSTEM_ZONEINFO))
    return str(packaged)


def machine_zone() -> str:
    """How the machine's zone is named: ``$TZ``, /etc/timezone, the /etc/localtime link, or the abbreviation."""
    if os.environ.get("TZ"):
        return os.environ["TZ"].lstrip(":")
    try:
        with open("/etc/timezone", encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        pass
    link = os.path.realpath("/etc/localtime")
    if "/zoneinfo/" in link:
        return link.split("/zoneinfo/", 1)[1]
    import time

    return time.tzname[0]


def _machine_tzinfo() -> datetime.tzinfo:
    return _machine_tzinfo_for(os.environ.get("TZ", "").lstrip(":"))


@functools.lru_cache(maxsize=4)
def _machine_tzinfo_for(configured: str) -> datetime.tzinfo:
    """The machine's zone as a tzinfo: ``$TZ`` (a name or a file), else /etc/localtime, else UTC."""
    from zoneinfo import ZoneInfo

    try:
        if configured and os.path.isabs(configured):
            with open(configured, "rb") as handle:
                return ZoneInfo.from_file(handle, key=configured)
        if configured:
            return _zone(configured)
        with open("/etc/localtime", "rb") as handle:
            return ZoneInfo.from_file(handle, key=machine_zone())
    except (OSError, ValueError) as exc:
        logging.getLogger(__name__).warning(
            "the machine's time zone is not one zoneinfo can load (a POSIX rule in $TZ?); RR's local times are "
            "read as UTC: set royalrender.timezone", extra={"tz": configured or "/etc/localtime", "error": str(exc)})
        return datetime.timezone.utc


@dataclass(frozen=True)
class Timezone:
    """A configured IANA zone, or None for the machine's."""

    name: Optional[str] = None

    def environment(self) -> Dict[str, str]:
        """What the worker's environment needs so that its local time is this zone."""
        return {"TZ": ":" + _zone_file(self.name)} if self.name else {}

    def describe(self) -> str:
        return self.name if self.name else "%s (the machine's zone; royalrender.timezone not set)" % machine_zone()

    def zone(self) -> datetime.tzinfo:
        """The zone RR's local times are converted in: the configured one, else the machine's."""
        return _zone(self.name) if self.name else _machine_tzinfo()

    def show(self, unix: float) -> str:
        """A Unix time as a local date in this zone."""
        try:
            return datetime.datetime.fromtimestamp(unix, self.zone()).strftime("%Y-%m-%d %H:%M:%S %Z")
        except (ValueError, OverflowError, OSError):
            return "not a date"


def parse(value: str) -> Timezone:
    """A ``royalrender.timezone`` value; ValueError for a name the zone database does not know."""
    _zone(value)
    _zone_file(value)
    return Timezone(value)
