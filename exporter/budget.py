"""A series budget for labels whose values are unbounded (users, job titles).

Values are admitted first come, first served, and stay admitted, so a
value's counters never move between its own series and ``__other__`` (which
would make both look like counter resets). Once the budget is spent, new
values are counted under ``__other__``.
"""

from __future__ import annotations

from typing import Set

OTHER = "__other__"


class LabelBudget:
    def __init__(self, series_budget: int, series_per_value: int):
        # One value's worth of series stays reserved for __other__ itself.
        self.capacity = max(0, series_budget // series_per_value - 1)
        self._admitted: Set[str] = set()
        self.overflowed = 0

    def label(self, value: str) -> str:
        """``value`` itself if admitted (now or before), else ``__other__``."""
        if value in self._admitted:
            return value
        if len(self._admitted) < self.capacity and value != OTHER:
            self._admitted.add(value)
            return value
        self.overflowed += 1
        return OTHER
