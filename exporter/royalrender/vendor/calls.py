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
from contextlib import contextmanager
from typing import Any, Callable, Collection, Dict, Iterator, Optional, Sequence, Tuple

MIB = 1024 * 1024
SKIPPED = "skipped: it crashed or hung the worker before"
#: a slot that started more than this many slot lengths before the file's last write is not current
STALE_SLOTS = 4
#: no documented value is larger: beyond, a float loses integer precision, and it is uninitialised memory
LARGEST_NUMBER = 2 ** 53
#: RR's local times are plausible between 1970 and 2100; anything else is not a time
LATEST_LOCAL_SECONDS = 4102444800
#: no documented array is larger (1440 slots, 2880 items, 180 days); beyond, a loop would outlast any timeout
LARGEST_SIZE = 100000


class LoadFailed(Exception):
    """``loadFromFile`` returned False or raised; the message carries the vendor's ``getError()``."""


class MemberFailed(Exception):
    """A method the current part of the file depends on failed; the part is dropped."""


# -- what a member's value must be ---------------------------------------------------------


def number(value: Any) -> Any:
    """An int or float that is finite and not absurdly large (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("expected a number, got %.80r" % (value,))
    # the stored value as a plain int or float: a subclass may lie in its comparisons or its repr
    value = int.__index__(value) if isinstance(value, int) else float.__float__(value)
    if not (isinstance(value, int) or math.isfinite(value)) or abs(value) > LARGEST_NUMBER:
        raise TypeError("expected a finite number up to 2**53, got %.80r" % (value,))
    return value


def local_time(unit: float) -> Callable[[Any], Any]:
    """A count of ``unit`` seconds of RR's local time since 1970 that falls between 1970 and 2100."""
    def check(value: Any) -> Any:
        value = number(value)
        if not 0 <= value * unit <= LATEST_LOCAL_SECONDS:
            raise TypeError("expected a local time between 1970 and 2100 (in steps of %g s), got %.80r"
                            % (unit, value))
        return value

    return check


def count(value: Any) -> int:
    """A non-negative int no larger than any documented array: sizes and counts."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= LARGEST_SIZE:
        raise TypeError("expected a count (int 0..%d), got %.80r" % (LARGEST_SIZE, value))
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


def describe(exc: BaseException) -> str:
    try:
        return ("%s: %s" % (type(exc).__name__, exc))[:300]
    except BaseException:  # noqa: BLE001 - an exception whose str() raises
        return type(exc).__name__


#: a vendor member may raise anything, SystemExit and KeyboardInterrupt included: each is that member's failure
VendorError = BaseException


class Calls:
    """One request's access to vendor objects, and what failed during it."""

    def __init__(self, rr: Any, avoid: Collection[str] = (),
                 announce: Callable[[Optional[str]], None] = lambda step: None):
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
        except VendorError as exc:  # a compiled module raises anything
            raise LoadFailed("%s.%s raised %s" % (class_name, method, describe(exc))) from None
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
            except VendorError as exc:
                self._record(obj, name, describe(exc))
                return None
            return self._checked(obj, name, raw, expect)
        self._record(obj, names[0], "missing")
        return None

    def call(self, obj: Any, method: str, *args: Any, expect: Callable[[Any], Any] = instance) -> Any:
        """``obj.method(*args)`` checked by ``expect``; ``MemberFailed`` when it is missing, raises or is off."""
        try:
            bound = getattr(obj, method)
        except VendorError as exc:  # AttributeError, or a property that raises
            self._record(obj, method, "missing" if isinstance(exc, AttributeError) else describe(exc))
            raise MemberFailed(method) from None
        try:
            raw = bound(*args)
        except VendorError as exc:
            self._record(obj, method, describe(exc))
            raise MemberFailed(method) from None
        checked = self._checked(obj, method, raw, expect)
        if checked is None and raw is not None:
            raise MemberFailed(method)
        return checked

    def risky(self, obj: Any, method: str, *args: Any, expect: Callable[[Any], Any] = instance) -> Any:
        """``call``, announced first; skipped when the daemon saw this very call crash or hang the worker."""
        key = risky_call_key(obj, method, args)
        if self.avoided(key):
            self.failures.setdefault(key, SKIPPED)
            raise MemberFailed(method)
        with self.step(key):
            return self.call(obj, method, *args, expect=expect)

    def attempt(self, obj: Any, method: str, *args: Any,
                expect: Callable[[Any], Any] = instance) -> Tuple[Any, Optional[str]]:
        """A risky call whose failure is itself an answer (which shape the module has): (value, None), or
        (None, what went wrong), the failure not recorded as one of the file's."""
        recorded = dict(self.failures)
        try:
            return self.risky(obj, method, *args, expect=expect), None
        except MemberFailed:
            errors = [error for key, error in self.failures.items() if key not in recorded]
            self.failures = recorded
            return None, "; ".join(errors) or "failed"

    def avoided(self, step: str) -> bool:
        """True when the daemon saw this risky step crash or hang the worker before: it is not taken again."""
        return step in self._avoid

    @contextmanager
    def step(self, key: str) -> Iterator[None]:
        """A risky step, announced to the daemon before and after, so only a crash inside it is pinned on it."""
        self._announce(key)
        try:
            yield
        finally:
            self._announce(None)

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
        except VendorError as exc:
            return "no error text (getError raised %s)" % describe(exc)


def risky_call_key(obj: Any, method: str, args: Sequence[Any]) -> str:
    """How a risky call is named in logs, metrics and the daemon's list of calls to avoid."""
    return "%s.%s(%s)" % (type(obj).__name__, method, ", ".join(repr(a) for a in args))


def scaled(value: Optional[float], factor: float) -> Optional[float]:
    if value is None:
        return None
    result = value * factor
    return result if math.isfinite(result) else None
