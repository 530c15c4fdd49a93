"""Bounds on label values taken from files: their length, and how many distinct ones become series.

Values are admitted first come, first served, and stay admitted, so a
value's counters never move between its own series and ``__other__`` (which
would make both look like counter resets). Once the budget is spent, new
values are counted under ``__other__``.

A value longer than ``max_length`` is cut and ends in ``TRUNCATED_SUFFIX``,
so the cut is visible in every query; values that only differ after the cut
share one series. Memory is then bounded by the budget times the length.
"""

from __future__ import annotations

from typing import Set

OTHER = "__other__"
TRUNCATED_SUFFIX = "...[truncated]"


class LabelBudget:
    def __init__(self, series_budget: int, series_per_value: int, max_length: int):
        # One value's worth of series stays reserved for __other__ itself.
        self.capacity = max(0, series_budget // series_per_value - 1)
        self.max_length = max_length
        self._admitted: Set[str] = set()
        self.overflowed = 0
        self.truncated = 0

    def label(self, value: str) -> str:
        """``value`` (cut to ``max_length``) if admitted, now or before, else ``__other__``."""
        if value in self._admitted:
            return value
        if len(value) > self.max_length:
            self.truncated += 1
            value = value[: self.max_length - len(TRUNCATED_SUFFIX)] + TRUNCATED_SUFFIX
            if value in self._admitted:
                return value
        if len(self._admitted) < self.capacity and value != OTHER:
            self._admitted.add(value)
            return value
        self.overflowed += 1
        return OTHER
