"""Royal Render as a source: its readers, its history for ``backfill`` and its ``probe``.

RR's statistics are binary files whose layout is not public; they are read
only through the vendor's Python module, in a worker process (``client``
on the daemon's side, ``vendor`` on the worker's), one reader per file kind
(``kinds``) and one reporting on the boundary itself. The source is active
only when the configuration has a ``royalrender`` section.
"""

from __future__ import annotations

from typing import Any, List, Optional

from exporter.paths import PathPattern
from exporter.royalrender import config, probe
from exporter.royalrender.client import WorkerClient, WorkerError
from exporter.royalrender.config import KindConfig, RoyalRenderConfig, kind_paths, worker_settings
from exporter.royalrender.contract import Kind
from exporter.royalrender.kinds import KINDS, with_history
from exporter.royalrender.reader import BoundaryReport, MemberFailures, TimeChecks, file_reader, worker_options, written
from exporter.sources import HistorySink, Source
from exporter.wholefile import ReadFailed


def _readers(section: Optional[RoyalRenderConfig]):
    if section is None:
        return []
    settings = worker_settings(section)
    worker = WorkerClient(settings)
    failures, time_checks = MemberFailures(), TimeChecks()
    readers: List[Any] = []
    # The kinds of one file (or the newest few) first, server stats first of all: a first read is published
    # reader by reader (``ingest``), so the farm's overview is served before thousands of client files are read.
    for kind in sorted(KINDS, key=lambda kind: kind.select == "all"):
        kind_config: KindConfig = section.kinds[kind.name]
        paths = kind_paths(kind, kind_config, settings.root) if kind_config.enabled else []
        if paths:
            readers.append(file_reader(kind, paths, kind_config.options, worker, failures, time_checks))
    return readers + [BoundaryReport(worker, failures, time_checks)] if readers else []


def _kind_history(kind: Kind, kind_config: KindConfig, root: Optional[str], worker: WorkerClient,
                  sink: HistorySink) -> List[str]:
    """Every slot of one kind's files into ``sink``; returns the files the worker could not read."""
    paths = sorted({p for pattern in kind_paths(kind, kind_config, root) for p in PathPattern(pattern).scan()})
    data, problems = {}, []
    progress = sink.progress("royalrender %s" % kind.name)
    for done, path in enumerate(paths, 1):
        progress(done, len(paths), done)
        try:
            saved = written(path, worker)
            data[path] = kind.interpret_history(
                worker.history(kind.name, path, worker_options(kind_config.options)).data, saved)
        except (WorkerError, ReadFailed) as exc:
            problems.append("%s: %s" % (path, exc))
    assert kind.history_families is not None  # kinds.with_history() chose it
    for when, families in kind.history_families(data, kind_config.options):
        sink.add(when, families)
    sink.note("royalrender %s: %d files read" % (kind.name, len(data)))
    return problems


def _history(section: RoyalRenderConfig, sink: HistorySink) -> List[str]:
    """``Source.history``: the server stats arrays and every daily stats file, through the worker."""
    settings = worker_settings(section)
    worker = WorkerClient(settings)
    problems: List[str] = []
    try:
        for kind in with_history():
            if section.kinds[kind.name].enabled:
                problems += _kind_history(kind, section.kinds[kind.name], settings.root, worker, sink)
    finally:
        worker.close()
    return problems


SOURCE = Source(name="royalrender", schema=config.SCHEMA, readers=_readers,
                doc="Royal Render statistics through the vendor's module", relative_to=config.relative_to,
                check=config.check, paths=config.paths, history=_history, probe=probe.run)
