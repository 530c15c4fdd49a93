"""Royal Render: its config section ``royalrender`` and its file kinds.

RR's statistics are binary files whose layout is not public; they are read
only through the vendor's Python module, in a worker process
(``worker``), one reader per file kind (``kinds``). The source is active
only when the configuration has a ``royalrender`` section.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Tuple

from exporter.logs import fields
from exporter.royalrender.kinds import KINDS
from exporter.schema import Boolean, Duration, Either, Field, ListOf, String, Struct
from exporter.sources import Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KindConfig:
    enabled: bool
    paths: Tuple[str, ...]
    options: Mapping[str, Any]


@dataclass(frozen=True)
class RoyalRenderConfig:
    root: Optional[str]
    module: str
    module_path: Tuple[str, ...]
    read_timeout: float
    kinds: Mapping[str, KindConfig]


def _paths(value) -> Tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value or ())


def _kind_schema(kind) -> Struct:
    def build(enabled, path, **options):
        return KindConfig(enabled=enabled, paths=_paths(path), options=options)

    where = "default %s (relative to root)" % kind.DEFAULT_PATH if kind.DEFAULT_PATH else "no public default: set it"
    return Struct(
        {
            "enabled": Field(Boolean(), default=getattr(kind, "ENABLED_BY_DEFAULT", True), doc="read this file kind"),
            "path": Field(Either(String(), ListOf(String())), doc="file or glob, or a list; " + where),
            **kind.EXTRA_OPTIONS,
        },
        build=build,
    )


def _schema() -> Struct:
    def build(root, module, module_path, read_timeout, **kinds):
        return RoyalRenderConfig(root, module, tuple(module_path or ()), read_timeout, kinds)

    return Struct(
        {
            "root": Field(String(), doc="RR's folder; default: $RR_ROOT (relink_lx.cfg honoured)"),
            "module": Field(String(), default="auto", doc="auto, a module name, or simulated (the stand-in)"),
            "module_path": Field(ListOf(String()), default=(), doc="folders to import the module from"),
            "read_timeout": Field(Duration(), default=30.0, doc="longest one file read may take"),
            **{kind.NAME: Field(_kind_schema(kind), default=_kind_schema(kind).defaults()) for kind in KINDS},
        },
        build=build,
    )


def kind_paths(kind, config: KindConfig, root: Optional[str]) -> List[str]:
    paths = list(config.paths) or ([kind.DEFAULT_PATH] if kind.DEFAULT_PATH else [])
    resolved = []
    for path in paths:
        if os.path.isabs(path):
            resolved.append(path)
        elif root:
            resolved.append(os.path.join(root, path))
        else:
            log.warning("Royal Render file kind skipped: relative path but no RR root (set royalrender.root or "
                        "RR_ROOT)", extra=fields(kind=kind.NAME, path=path))
    return resolved


def _readers(config: Optional[RoyalRenderConfig]):
    if config is None:
        return []
    from exporter.royalrender import module
    from exporter.royalrender.reader import RrFileReader
    from exporter.royalrender.worker import WorkerClient

    root = module.resolve_root(config.root)
    module_paths = list(config.module_path) or module.default_module_paths(root)
    worker = WorkerClient(config.module, module_paths, config.read_timeout)
    readers = []
    for kind in KINDS:
        kind_config: KindConfig = config.kinds[kind.NAME]
        paths = kind_paths(kind, kind_config, root) if kind_config.enabled else []
        if paths:
            readers.append(RrFileReader(kind, paths, kind_config.options, worker))
    return readers


SOURCE = Source(name="royalrender", schema=_schema(), readers=_readers,
                doc="Royal Render statistics through the vendor's module")
