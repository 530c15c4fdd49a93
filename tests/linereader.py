"""A small real reader for the in-process tests of the core: counts the lines of the files it matches.

It keeps to the contract in ``exporter.sources`` and nothing more, so the
pipeline, renderer and reloader are tested apart from Rush and Royal Render.
A file whose content starts with ``fail`` makes ``sync`` raise after the
other files are read, as a reader with a bug would (the ingest counts it in
``reader_failures`` and keeps the previous snapshot).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Collection, Dict, Iterable, Optional, Tuple

from prometheus_client.core import GaugeMetricFamily

from exporter.paths import PathPattern
from exporter.sources import FileStatus

KIND = "test_lines"


@dataclass(frozen=True)
class LineSnapshot:
    files: Tuple[FileStatus, ...]
    lines: Tuple[Tuple[str, int], ...]  # (path, lines)


class LineReader:
    def __init__(self, *patterns: str):
        self.kind = KIND
        self.patterns = [PathPattern(p) for p in patterns]
        self.closed = threading.Event()
        self._lines: Dict[str, int] = {}

    def sync(self, paths: Optional[Collection[str]]) -> LineSnapshot:
        failing = []
        for path in self._wanted(paths):
            try:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
            except FileNotFoundError:
                self._lines.pop(path, None)
                continue
            if text.startswith("fail"):
                failing.append(path)
            else:
                self._lines[path] = text.count("\n")
        if failing:
            raise RuntimeError("a reader bug, on purpose: %s" % ", ".join(failing))
        return LineSnapshot(
            files=tuple(FileStatus(kind=KIND, path=path, up=True, last_success_time=time.time(), errors_total=0,
                                   malformed_lines_total=0, bytes_read_total=0, lines_read_total=lines)
                        for path, lines in sorted(self._lines.items())),
            lines=tuple(sorted(self._lines.items())))

    def _wanted(self, paths: Optional[Collection[str]]) -> Iterable[str]:
        if paths is not None:
            return paths
        return sorted(set(self._lines) | {path for pattern in self.patterns for path in pattern.scan()})

    def families(self, snapshot: LineSnapshot) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("test_file_lines", "Lines of each file", labels=["file"])
        for path, lines in snapshot.lines:
            family.add_metric([os.path.basename(path)], lines)
        yield family

    def close(self) -> None:
        self.closed.set()
