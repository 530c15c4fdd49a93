"""Rush as a source: the ``rush`` config section, its one reader, and its history for ``backfill``."""

from __future__ import annotations

from typing import List, Optional

from exporter.rush import config
from exporter.rush.config import RushConfig
from exporter.rush.cpu_acct import CpuAcctReader
from exporter.rush.history import backfill
from exporter.sources import Reader, Source


def _readers(section: Optional[RushConfig]) -> List[Reader]:
    return [CpuAcctReader(section)] if section is not None and section.cpu_acct else []


SOURCE = Source(name="rush", schema=config.SCHEMA, readers=_readers, doc="Rush cpu.acct accounting logs",
                relative_to=config.relative_to, check=config.check, paths=config.paths, history=backfill)
