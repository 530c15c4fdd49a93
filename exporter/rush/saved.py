"""The Rush reader's state as bytes, for a checkpoint: JSON, with exact totals and raw bytes kept exact.

JSON rather than pickle: a checkpoint is read back by the daemon, and a file
in a state directory must not be able to run code in it.
"""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction
from typing import Any, Dict, List, Optional, Union

from exporter.budget import LabelBudget
from exporter.rush.config import RushConfig

Exact = Union[int, Fraction]


def config_key(config: RushConfig) -> RushConfig:
    """The part of the section the state depends on: all of it but how many processes read."""
    return dataclasses.replace(config, read_processes=None)


def dump(state: Dict[str, Any]) -> bytes:
    return json.dumps(state, separators=(",", ":"), sort_keys=True).encode()


def load(data: bytes) -> Dict[str, Any]:
    loaded = json.loads(data)
    if not isinstance(loaded, dict):
        raise ValueError("not a reader state")
    return loaded


def exact_list(values: List[Exact]) -> List[int | str]:
    """Whole numbers as they are, fractions as ``"n/d"``."""
    return [value if isinstance(value, int) else "%d/%d" % (value.numerator, value.denominator) for value in values]


def to_exact_list(values: List[int | str]) -> List[Exact]:
    return [value if isinstance(value, int) else Fraction(value) for value in values]


def _totals(mapping) -> Dict[str, List[int | str]]:
    return {key: exact_list(totals) for key, totals in mapping.items()}


def _to_totals(mapping) -> Dict[str, List[Exact]]:
    return {key: to_exact_list(totals) for key, totals in mapping.items()}


def _timed(value: Optional[list]) -> Optional[tuple]:
    return None if value is None else (value[0], value[1])


_PLAIN = ("up", "down_reason", "last_success_time", "errors", "malformed", "bytes", "lines", "seen_host",
          "records", "daemon_starts", "last_record_time")


def file_state(state: Any) -> Dict[str, Any]:
    """A reader's per-file state (``cpu_acct._FileState``) as JSON values."""
    saved = {name: getattr(state, name) for name in _PLAIN}
    saved.update(utilization=state.utilization, online=state.online, hosts=_totals(state.hosts),
                 users=_totals(state.users), titles=_totals(state.titles))
    return saved


def to_file_state(state: Any, saved: Dict[str, Any]) -> Any:
    for name in _PLAIN:
        setattr(state, name, saved[name])
    state.utilization, state.online = _timed(saved["utilization"]), _timed(saved["online"])
    state.hosts, state.users, state.titles = (_to_totals(saved[name]) for name in ("hosts", "users", "titles"))
    return state


def budget(value: LabelBudget) -> Dict[str, Any]:
    """A label budget's admissions (in order) and counters."""
    return {"admitted": list(value.admitted()), "overflowed": value.overflowed, "truncated": value.truncated}


def to_budget(value: LabelBudget, saved: Optional[Dict[str, Any]]) -> None:
    """Admits again what was admitted (the budget is the one configured then: the config is the same)."""
    if saved is None:
        return
    value.readmit(saved["admitted"], saved["overflowed"], saved["truncated"])
