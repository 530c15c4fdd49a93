"""Configured file patterns: which files a source reads and which folders to watch.

One matcher serves both the periodic scan and the filtering of watch events,
so the two can never disagree about which files belong to a source.
``*``, ``?`` and ``[...]`` match within one path segment, ``**`` matches any
number of folders (watchdog 7's own patterns use ``full_match`` semantics
that differ from shell globs, so we filter paths ourselves). As in the shell,
a wildcard does not match a leading dot: temporary files of atomic writers
(rsync's ``.cpu.acct.XXXXXX``) are not read half written.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Dict, FrozenSet, Iterator, List, Optional

log = logging.getLogger(__name__)

#: Most files one pattern's scan yields: a pattern that matches more (``/**/*``) is cut there, with a warning,
#: ``renderfarm_exporter_pattern_match_limit_reached`` and a line on the status page, instead of reading a whole
#: file system (over /usr: 3 minutes to ready, 770 MB, a 133 MB exposition). A real farm has a few thousand.
MAX_MATCHES = 100_000
#: A ``**`` whose fixed folder has fewer path components than this walks (and watches) too much of the machine.
MIN_RECURSIVE_ROOT_DEPTH = 2
_MAGIC = re.compile(r"[*?[]")
_capped_lock = threading.Lock()
_capped: Dict[str, int] = {}  # pattern -> the limit its last full scan stopped at
_ANY_FOLDERS = r"(?:(?!\.)[^/]+/)*"


def _segment_regex(segment: str) -> str:
    out = [] if segment.startswith(".") else [r"(?!\.)"]
    i = 0
    while i < len(segment):
        c = segment[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = segment.find("]", i + 2 if segment[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = segment[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class PathPattern:
    """An absolute file pattern, its fixed root folder and its regular expression."""

    def __init__(self, pattern: str):
        self.pattern = os.path.normpath(os.path.abspath(pattern))
        segments = self.pattern.split("/")[1:]
        fixed: List[str] = []
        for segment in segments:
            if _MAGIC.search(segment):
                break
            fixed.append(segment)
        if len(fixed) == len(segments):
            fixed = fixed[:-1]
        self.root = "/" + "/".join(fixed)
        rest = segments[len(fixed) :]
        self.recursive = "**" in rest or len(rest) > 1
        self.depth = None if "**" in rest else len(rest)
        pieces = [_ANY_FOLDERS if seg == "**" else _segment_regex(seg) + "/" for seg in rest[:-1]]
        pieces.append(_ANY_FOLDERS + r"(?!\.)[^/]+" if rest[-1] == "**" else _segment_regex(rest[-1]))
        self._regex = re.compile(re.escape(self.root.rstrip("/") + "/") + "".join(pieces), re.DOTALL)

    def matches(self, path: str) -> bool:
        return self._regex.fullmatch(path) is not None

    def scan(self) -> Iterator[str]:
        """Existing regular files matching the pattern (symlinks resolved by the reader)."""
        if self.depth == 1 and not _MAGIC.search(self.pattern):
            if os.path.isfile(self.pattern):
                yield self.pattern
            return
        root_depth = self.root.rstrip("/").count("/")
        limit, found = MAX_MATCHES, 0
        for folder, dirs, files in os.walk(self.root):
            if self.depth is not None and folder.rstrip("/").count("/") - root_depth >= self.depth - 1:
                dirs[:] = []
            for name in files:
                path = os.path.join(folder, name)
                if self.matches(path) and os.path.isfile(path):
                    if found == limit:
                        self._capped(limit)
                        return
                    found += 1
                    yield path
        with _capped_lock:
            was = _capped.pop(self.pattern, None)
        if was is not None:
            log.info("pattern matches fewer files than the limit again", extra={"fields": {
                "pattern": self.pattern, "limit": was, "matched": found}})

    def _capped(self, limit: int) -> None:
        with _capped_lock:
            new = self.pattern not in _capped
            _capped[self.pattern] = limit
        if new:
            log.warning("pattern matches more files than the limit: only the first found are read; narrow it",
                        extra={"fields": {"pattern": self.pattern, "limit": limit}})

    def __repr__(self) -> str:
        return "PathPattern(%r)" % self.pattern


def capped_patterns() -> FrozenSet[str]:
    """The patterns whose last full scan stopped at ``MAX_MATCHES``."""
    with _capped_lock:
        return frozenset(_capped)


def walks_too_much(pattern: str) -> Optional[str]:
    """Why a pattern with ``**`` would walk a whole file system (``/**``, ``/*/**``, ``/usr/**``: a fixed folder
    of fewer than ``MIN_RECURSIVE_ROOT_DEPTH`` components), or None."""
    if "**" not in pattern.split("/"):
        return None
    try:
        root = PathPattern(pattern).root
    except re.error:
        return None
    if len([part for part in root.split("/") if part]) >= MIN_RECURSIVE_ROOT_DEPTH:
        return None
    return ("%r: ** below %s walks and watches every folder of the file system under it, at each rescan (at "
            "most %d matching files are read): start the pattern at least %d folders deep, e.g. "
            "/srv/rush/**/cpu.acct" % (pattern, root, MAX_MATCHES, MIN_RECURSIVE_ROOT_DEPTH))


def glob_problems(pattern: str) -> List[str]:
    """Why a configured glob cannot match what its author meant: ``***``, ``**`` inside a segment, an unclosed ``[``,
    a ``**`` that would walk a whole file system."""
    too_much = walks_too_much(pattern)
    problems = [too_much] if too_much else []
    for segment in pattern.split("/"):
        if "***" in segment:
            problems.append("%r: *** is not a glob (* matches within a folder, ** any number of folders)" % segment)
        elif "**" in segment and segment != "**":
            problems.append("%r: ** matches folders only as a whole path segment (a/**/b); here it is *" % segment)
        opened = segment.find("[")
        if opened >= 0 and segment.find("]", opened + 2 if segment[opened + 1:opened + 2] in ("!", "]")
                                        else opened + 1) < 0:
            problems.append("%r: unclosed '[' is taken literally" % segment)
    return problems


def missing_root(pattern: str) -> Optional[str]:
    """The pattern's fixed folder if it does not exist (nothing can match until it does), else None."""
    root = PathPattern(pattern).root
    return None if os.path.isdir(root) else root
