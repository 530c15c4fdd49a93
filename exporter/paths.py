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

import os
import re
from typing import Iterator, List, Optional

_MAGIC = re.compile(r"[*?[]")
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
        for folder, dirs, files in os.walk(self.root):
            if self.depth is not None and folder.rstrip("/").count("/") - root_depth >= self.depth - 1:
                dirs[:] = []
            for name in files:
                path = os.path.join(folder, name)
                if self.matches(path) and os.path.isfile(path):
                    yield path

    def __repr__(self) -> str:
        return "PathPattern(%r)" % self.pattern


def glob_problems(pattern: str) -> List[str]:
    """Why a configured glob cannot match what its author meant: ``***``, ``**`` inside a segment, an unclosed ``[``."""
    problems = []
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
