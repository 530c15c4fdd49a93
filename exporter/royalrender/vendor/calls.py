"""Calling the vendor's classes from the worker, so that one bad member costs only what depends on it.

The vendor module is a compiled black box: a member may be missing in the
installed RR version, raise when read, return another type, or crash the
process. ``Calls`` is the one place that touches vendor objects for an
extractor:

- only a failed ``loadFromFile``/``loadFile`` fails the file (``LoadFailed``);
- a field that is missing, raises or has an unexpected type reads as None,
  and is recorded in ``failures`` as ``Class.member`` with the first error;
- a method that fails raises ``MemberFailed``, which ``guarded`` turns into
  "this part of the file is dropped", recorded the same way;
- a *risky* call (outside the documented contract of the shape detected,
  or documented as fragile) is announced to the daemon before it is made, so
  a crash or hang inside it is pinned on that call; the daemon then lists it
  in ``avoid`` and it is never made again.

Runs in the worker process: standard library only, Python 3.7 and later.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Collection, Dict, Optional, Sequence

MIB = 1024 * 1024
SKIPPED = "skipped: it crashed or hung the worker before"


class LoadFailed(Exception):
    """``loadFromFile`` returned False or raised; the message carries the vendor's ``getError()``."""


class MemberFailed(Exception):
    """A method the current part of the file depends on failed; the part is dropped."""


# -- what a member's value must be ---------------------------------------------------------


def number(value: Any) -> Any:
    """An int or float that is finite (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError("expected a finite number, got %r" % (value,))
    return value


def count(value: Any) -> int:
    """A non-negative int: array sizes and counts."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError("expected a count (int >= 0), got %r" % (value,))
    return value


def flag(value: Any) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise TypeError("expected a bool, got %r" % (value,))


def text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise TypeError("expected a string, got %r" % (value,))
    return value


def instance(value: Any) -> Any:
    """A vendor object (an item, a day, a layer): anything but None and plain values."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        raise TypeError("expected an object, got %r" % (value,))
    return value


def sequence(value: Any) -> list:
    try:
        return list(value)
    except TypeError:
        raise TypeError("expected a list, got %r" % (value,)) from None


def _describe(exc: BaseException) -> str:
    return ("%s: %s" % (type(exc).__name__, exc))[:300]


class Calls:
    """One request's access to vendor objects, and what failed during it."""

    def __init__(self, rr: Any, avoid: Collection[str] = (), announce: Callable[[str], None] = lambda call: None):
        self.rr = rr
        self.failures: Dict[str, str] = {}
        self._avoid = frozenset(avoid)
        self._announce = announce

    def load(self, class_name: str, path: str, *load_args: Any, method: str = "loadFromFile") -> Any:
        """An instance of the documented class with ``path`` loaded by ``method``; else ``LoadFailed``."""
        cls = getattr(self.rr, class_name, None)
        if cls is None:
            raise LoadFailed("the Royal Render module has no class %s" % class_name)
        try:
            stats = cls()
            loaded = getattr(stats, method)(path, *load_args)
        except Exception as exc:  # noqa: BLE001 - a compiled module raises anything
            raise LoadFailed("%s.%s raised %s" % (class_name, method, _describe(exc))) from None
        if not loaded:
            raise LoadFailed("%s failed: %s" % (method, self._error_text(stats)))
        return stats

    def value(self, obj: Any, *names: str, expect: Callable[[Any], Any] = number) -> Optional[Any]:
        """The first of ``names`` (a documented field, then its aliases) that ``obj`` has, checked by ``expect``.

        None, recorded as a failure of the documented name, when none is there
        or the one found raises or has another type.
        """
        for name in names:
            try:
                raw = getattr(obj, name)
            except AttributeError:
                continue
            except Exception as exc:  # noqa: BLE001
                self._record(obj, name, _describe(exc))
                return None
            return self._checked(obj, name, raw, expect)
        self._record(obj, names[0], "missing")
        return None

    def call(self, obj: Any, method: str, *args: Any, expect: Callable[[Any], Any] = instance) -> Any:
        """``obj.method(*args)`` checked by ``expect``; ``MemberFailed`` when it is missing, raises or is off."""
        try:
            bound = getattr(obj, method)
        except Exception as exc:  # noqa: BLE001 - AttributeError, or a property that raises
            self._record(obj, method, "missing" if isinstance(exc, AttributeError) else _describe(exc))
            raise MemberFailed(method) from None
        try:
            raw = bound(*args)
        except Exception as exc:  # noqa: BLE001
            self._record(obj, method, _describe(exc))
            raise MemberFailed(method) from None
        checked = self._checked(obj, method, raw, expect)
        if checked is None and raw is not None:
            raise MemberFailed(method)
        return checked

    def risky(self, obj: Any, method: str, *args: Any, expect: Callable[[Any], Any] = instance) -> Any:
        """``call``, announced first; skipped when the daemon saw this very call crash or hang the worker."""
        key = risky_call_key(obj, method, args)
        if not self.attempt(key):
            self.failures.setdefault(key, SKIPPED)
            raise MemberFailed(method)
        return self.call(obj, method, *args, expect=expect)

    def attempt(self, step: str) -> bool:
        """Announces a risky step to the daemon; False when it saw this step crash or hang the worker before."""
        if step in self._avoid:
            return False
        self._announce(step)
        return True

    def guarded(self, produce: Callable[..., Any], *args: Any, default: Any = None, **kwargs: Any) -> Any:
        """``produce(*args, **kwargs)``, or ``default`` when a member it needs failed (already recorded)."""
        try:
            return produce(*args, **kwargs)
        except MemberFailed:
            return default

    def _checked(self, obj: Any, name: str, raw: Any, expect: Callable[[Any], Any]) -> Any:
        try:
            return expect(raw)
        except TypeError as exc:
            self._record(obj, name, str(exc)[:300])
            return None

    def _record(self, obj: Any, member: str, error: str) -> None:
        self.failures.setdefault("%s.%s" % (type(obj).__name__, member), error)

    @staticmethod
    def _error_text(stats: Any) -> str:
        try:
            return str(stats.getError() or "no error text")
        except Exception as exc:  # noqa: BLE001
            return "no error text (getError raised %s)" % _describe(exc)


def risky_call_key(obj: Any, method: str, args: Sequence[Any]) -> str:
    """How a risky call is named in logs, metrics and the daemon's list of calls to avoid."""
    return "%s.%s(%s)" % (type(obj).__name__, method, ", ".join(repr(a) for a in args))


def scaled(value: Optional[float], factor: float) -> Optional[float]:
    return None if value is None else value * factor


def local_to_unix(local_seconds: float) -> float:
    """RR stores local wall-clock seconds; Prometheus wants Unix time.

    "Local" is the worker's time zone, which the daemon sets to
    ``royalrender.timezone`` (the farm's zone) through ``TZ``.
    """
    whole = int(local_seconds)
    broken_down = time.gmtime(whole)[:8] + (-1,)
    return time.mktime(broken_down) + (local_seconds - whole)


def local_midnight(unix_seconds: float) -> float:
    """Unix time of the local midnight that starts the day of ``unix_seconds``."""
    day = time.localtime(unix_seconds)
    return time.mktime((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0, 0, 0, -1))
