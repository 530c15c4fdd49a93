"""Structured logging to stderr in logfmt or JSON, as Prometheus exporters do.

Callers pass key/value context with ``extra=fields(path=..., error=...)`` so
that both formats carry the same fields and log processors can parse them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from typing import Dict, Optional, Tuple

LEVELS = ("debug", "info", "warn", "error")
FORMATS = ("logfmt", "json")


def fields(**kv) -> dict:
    """Context for one log call: ``log.info("msg", extra=fields(path=p))``."""
    return {"fields": kv}


def _iso_time(record: logging.LogRecord) -> str:
    ms = int(record.msecs)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + ".%03dZ" % ms


def _level_name(record: logging.LogRecord) -> str:
    return "warn" if record.levelno == logging.WARNING else record.levelname.lower()


def _record_items(record: logging.LogRecord):
    yield "ts", _iso_time(record)
    yield "level", _level_name(record)
    yield "logger", record.name
    yield "msg", record.getMessage()
    yield from getattr(record, "fields", {}).items()
    if record.exc_info:
        yield "exception", logging.Formatter().formatException(record.exc_info)


# Control characters (C0, DEL, C1) and line/paragraph separators come from file content: raw, an ESC
# sequence recolours a terminal, a CR overwrites the line, a NUL or U+2028 splits it for log shippers.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f\u2028\u2029"\\]')
_NEEDS_QUOTES = re.compile(r'[ =\x00-\x1f\x7f-\x9f\u2028\u2029"\\]')
_SHORT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    char = match.group()
    return _SHORT_ESCAPES.get(char) or "\\u%04x" % ord(char)


def _logfmt_value(value) -> str:
    """The value as is when safe, else quoted with every control character escaped (``\\u001b``)."""
    text = str(value)
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + _UNSAFE.sub(_escape, text) + '"'


#: Most characters of a statistics file's content a log line shows (``line_fields``).
EXCERPT_CHARACTERS = 16
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x5b\x5d-\x7e]")  # backslash included, so escapes stay one-to-one


def _escape_any(match: re.Match) -> str:
    code = ord(match.group())
    if code == 0x5C:
        return "\\\\"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (decoded with surrogateescape)
        return "\\x%02x" % (code - 0xDC00)
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code if code < 0x10000 else "\\U%08x" % code


def excerpt(text: str, limit: int = EXCERPT_CHARACTERS) -> str:
    """The first ``limit`` characters of ``text`` with everything outside printable ASCII escaped (``\\xNN``)."""
    return _NOT_PRINTABLE_ASCII.sub(_escape_any, text[:limit])


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with its control characters escaped (``\\x0a``): a newline or an ESC in a configured path cannot
    start a line of its own, or recolour a terminal, where the text is printed or returned as lines."""
    return _CONTROL.sub(_escape_any, text)


def line_fields(line: str, show: bool = True) -> Dict[str, object]:
    """How a log call shows a line read from a statistics file: never verbatim, only its length in bytes and
    (``show``) a short escaped excerpt of its start; the caller adds its position. The one way file content
    reaches the log: a symlink or a glob can point the exporter at any file it can read (a password file)."""
    summary: Dict[str, object] = {"line_bytes": len(line.encode("utf-8", "surrogateescape"))}
    if show:
        summary["excerpt"] = excerpt(line)
    return summary


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join("%s=%s" % (k, _logfmt_value(v)) for k, v in _record_items(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({k: v for k, v in _record_items(record)}, default=str)


def setup(level: str = "info", fmt: str = "logfmt") -> None:
    """Route the ``exporter`` loggers to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger("exporter")
    root.handlers[:] = [handler]
    root.setLevel({"warn": logging.WARNING}.get(level, level.upper()))
    root.propagate = False


class RateLimitedLog:
    """Logs a recurring problem at most once per interval per key, and once more when it stops.

    A file with a million malformed lines, a checkpoint write failing every
    2 s on a full disk, a folder that cannot be watched, tried every second:
    each must not produce a log line per attempt. The count of repeats left
    out goes into the next line (``suppressed_since_last``), and ``ended``
    says when the problem stopped, with the repeats left out since the last
    line, so a reader of the log knows both how long and how often.
    """

    def __init__(self, logger: logging.Logger, interval: float = 60.0):
        self._logger = logger
        self._interval = interval
        self._lock = threading.Lock()
        self._state: Dict[str, Tuple[float, int]] = {}

    def forget(self, *keys: str) -> None:
        """Drops what is kept of ``keys`` (a file that is gone: per-file keys must not pile up)."""
        with self._lock:
            for key in keys:
                self._state.pop(key, None)

    def warning(self, key: str, msg: str, **kv) -> None:
        suppressed = self._due(key)
        if suppressed is not None:
            self._logger.warning(msg, extra=fields(**kv, **_repeats(suppressed)))

    def exception(self, key: str, msg: str, **kv) -> None:
        """``warning`` at error level with the traceback being handled (a reader that fails at every sync)."""
        suppressed = self._due(key)
        if suppressed is not None:
            self._logger.exception(msg, extra=fields(**kv, **_repeats(suppressed)))

    def _due(self, key: str) -> Optional[int]:
        """The repeats left out since the last line of ``key`` when one is due now, else None (counted)."""
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._state.get(key, (float("-inf"), 0))
            if now - last < self._interval:
                self._state[key] = (last, suppressed + 1)
                return None
            self._state[key] = (now, 0)
        return suppressed

    def ended(self, key: str, msg: str, **kv) -> None:
        """The problem of ``key`` stopped: ``msg`` logged (info) if it was warned about, with the repeats left out
        since the last warning; nothing if it was not. The next occurrence is warned about at once."""
        with self._lock:
            state = self._state.pop(key, None)
        if state is None:
            return
        self._logger.info(msg, extra=fields(**kv, suppressed_since_last=state[1]))


def _repeats(suppressed: int) -> Dict[str, int]:
    return {"suppressed_since_last": suppressed} if suppressed else {}
