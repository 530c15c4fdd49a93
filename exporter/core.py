"""The core wired together: readers -> pipeline -> renderer, and the status board.

What the daemon serves over HTTP (``exporter.daemon``) and what ``--once``
prints. Nothing here imports the HTTP side, so a one-shot read starts
without it.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

from exporter.checkpoint import CheckpointStore
from exporter.config import Config, WatchConfig
from exporter.pipeline import Pipeline
from exporter.renderer import DirtySections, Renderer
from exporter.sources import Reader, registered_sources
from exporter.status import RuntimeStatus
from exporter.statusboard import StatusBoard


def build_readers(config: Config) -> Dict[str, Sequence[Reader]]:
    return {source.name: source.readers(config.sources[source.name]) for source in registered_sources()}


class Parts:
    """The core, wired: the pipeline marks sources dirty, the renderer renders them from the pipeline's
    snapshots, and both report to the status board, which the exporter's section and the status page read."""

    def __init__(self, readers: Mapping[str, Sequence[Reader]], watch: WatchConfig,
                 store: Optional[CheckpointStore] = None):
        dirty = DirtySections()
        self.board = StatusBoard(changed=dirty.changed)
        self.board.storing(store.directory if store is not None else "")
        self.pipeline = Pipeline(readers, watch, self.board, dirty.changed, store)
        self.renderer = Renderer(list(readers), self.pipeline, self.status, dirty)

    def status(self) -> RuntimeStatus:
        return self.board.status(self.pipeline.readings())

    def start(self) -> None:
        self.pipeline.start()
        self.renderer.start()

    def stop(self) -> None:
        self.renderer.stop()
        self.pipeline.stop()

    def alive(self) -> bool:
        return self.pipeline.alive() and self.renderer.alive()


def render_once(config: Config, openmetrics: bool = False) -> bytes:
    """Reads every configured file once and returns the exposition (for ``--once``)."""
    parts = Parts(build_readers(config), config.watch)
    try:
        parts.renderer.render_now(parts.pipeline.ingest_once())
        return parts.renderer.current().body(openmetrics, compressed=False)
    finally:
        parts.pipeline.close_readers()
