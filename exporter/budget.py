"""The one cardinality budget every breakdown by a name taken from a file uses (Rush hosts, users, titles;
Royal Render users, projects, render apps, render time layers).

The policy, the same everywhere:

- **first come, stays admitted.** A value gets a series of its own the
  first time it is seen while the budget has room, and keeps it for the
  reader's life (until the exporter restarts or a reload changes the
  source's section). The set of series therefore never flaps between reads or
  renders, and a value's counters never move between its own series and
  ``__other__`` (which would make both look like counter resets).
- **the rest is** ``__other__``. Once the budget is spent, new values are
  counted under ``__other__``, whose series are reserved out of the budget
  (one value's worth), so the series never exceed ``series_budget``.
- **seen together, offered in the breakdown's order.** Values first seen in
  the same read are offered in the order the breakdown gives them (Rush:
  record order; RR: the most recently active first, then by name), so which
  ones get in is deterministic.

A value longer than ``max_length`` is cut and ends in ``TRUNCATED_SUFFIX``,
so the cut is visible in every query; values that only differ after the cut
share one series. Memory is then bounded by the budget times the length.
"""

from __future__ import annotations

from typing import Dict, Hashable, Iterable, Optional

OTHER = "__other__"
TRUNCATED_SUFFIX = "...[truncated]"


class LabelBudget:
    """Which values of one breakdown have series of their own; used by one thread (a source's ingest).

    ``series_per_value``: the series one admitted value can create, so
    ``series_budget // series_per_value - 1`` values are admitted.
    ``max_length``: longer string values are cut (None: never cut).
    """

    def __init__(self, series_budget: int, series_per_value: int, max_length: Optional[int] = None):
        # One value's worth of series stays reserved for __other__ itself.
        self.capacity = max(0, series_budget // series_per_value - 1)
        self.max_length = max_length
        self._admitted: Dict[Hashable, None] = {}  # a dict: admissions in order, for checkpoints
        self.overflowed = 0  # values counted as __other__, once per offer
        self.truncated = 0  # values cut, once per offer

    def label(self, value: str) -> str:
        """``value`` (cut to ``max_length``) if admitted, now or before, else ``__other__``."""
        if value in self._admitted:
            return value
        if self.max_length is not None and len(value) > self.max_length:
            self.truncated += 1
            value = value[: self.max_length - len(TRUNCATED_SUFFIX)] + TRUNCATED_SUFFIX
        return value if self.admits(value) else OTHER

    def admits(self, key: Hashable) -> bool:
        """Whether ``key`` (a value, or a tuple of them such as (project, layer)) has series of its own.

        A key that is or holds ``__other__`` itself is never admitted: it would share the overflow's series.
        """
        if key in self._admitted:
            return True
        if len(self._admitted) < self.capacity and not _names_other(key):
            self._admitted[key] = None
            return True
        self.overflowed += 1
        return False


    def label_many(self, value: str, count: int) -> str:
        """``label(value)`` for ``count`` records at once, counted as ``count`` calls would count them.

        Later offers of a value decide as the first did (an admitted value stays admitted, a full budget
        stays full), so tallies merged in file order admit exactly what a line-by-line read admits."""
        label = self.label(value)
        if count > 1:
            if self.max_length is not None and len(value) > self.max_length:
                self.truncated += count - 1
            if label == OTHER:
                self.overflowed += count - 1
        return label

    def admitted(self) -> Iterable[Hashable]:
        """The admitted values, in the order they were admitted (what a checkpoint saves)."""
        return tuple(self._admitted)

    def readmit(self, values: Iterable[Hashable], overflowed: int, truncated: int) -> None:
        """Restores a saved budget: the same values admitted in the same order, the same counts."""
        for value in values:
            self.admits(value)
        self.overflowed, self.truncated = overflowed, truncated


def _names_other(key: Hashable) -> bool:
    return key == OTHER or (isinstance(key, tuple) and OTHER in key)
