"""What a Royal Render file kind module exports: one ``KIND``, checked by mypy instead of guessed with hasattr.

A kind turns the plain data its extractor (``vendor/<name>.py``, run in the
worker) returns for each file into metric families; ``kinds.KINDS`` lists
them. Optional parts are fields with a default, so every caller reads the
same shape whether a kind has them or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, List, Literal, Mapping, Optional, Tuple

from prometheus_client.metrics_core import Metric

from exporter.royalrender.times import Written
from exporter.schema import Field

#: a kind's options: its config keys beyond ``enabled`` and ``path`` (``extra_options``), with their values
Options = Mapping[str, Any]
#: plain data of every file read, by path
DataByPath = Mapping[str, Any]
#: one file's data in, the same data with the names past the series budget under ``__other__`` out
Bound = Callable[[Any], Any]


def _unbounded(data: Any) -> Any:
    return data


def _one_file(options: Options) -> int:
    return 1


def _as_read(data: Any, written: Written) -> Any:
    return data


@dataclass(frozen=True)
class Kind:
    """One kind of RR statistics file.

    ``select``: ``all`` reads every match; ``newest`` reads only the
    ``newest_count(options)`` most recently changed ones (one by default).
    ``bounded(options)``: for kinds whose label values are unbounded (user,
    project, layer names), a fresh ``budget.LabelBudget`` state for one
    reader's life, applied to each file's data as it is read, so every
    render of that data shows the same series. ``history_families``: for
    kinds whose files keep a history that ``backfill`` writes, (time,
    families) pairs in time order.
    """

    name: str
    vendor_class: str
    default_path: Optional[str]  # relative to RR's folder; None where the location is not public
    select: Literal["all", "newest"]
    families: Callable[[DataByPath, Options], Iterable[Metric]]
    extra_options: Mapping[str, Field] = field(default_factory=dict)
    newest_count: Callable[[Options], int] = _one_file
    bounded: Optional[Callable[[Options], Bound]] = None
    history_families: Optional[Callable[[DataByPath, Options], Iterable[Tuple[float, List[Metric]]]]] = None
    interpret: Callable[[Any, Written], Any] = _as_read
    interpret_history: Callable[[Any, Written], Any] = _as_read

    def budget(self, options: Options) -> Bound:
        """A fresh series budget for one reader's life (``bounded``); kinds without one pass data through."""
        return self.bounded(options) if self.bounded is not None else _unbounded

    def newest(self, options: Options) -> Optional[int]:
        """How many of the most recently changed matches to read; None: every match."""
        return None if self.select == "all" else self.newest_count(options)
