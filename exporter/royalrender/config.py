"""The ``royalrender`` config section: its schema, the paths of each file kind, how to start the worker,
and what in the section cannot work."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, replace
from typing import Any, List, Mapping, Optional, Tuple

from exporter.paths import glob_problems, missing_root
from exporter.royalrender import interpreter, timezone
from exporter.royalrender.client import WorkerSettings, default_python, worker_environment
from exporter.royalrender.contract import Kind
from exporter.royalrender.kinds import KINDS
from exporter.royalrender.vendor import module
from exporter.schema import Boolean, Duration, Either, Field, Glob, ListOf, Scalar, String, Struct
from exporter.sources import ConfigNotice, ConfiguredPath


@dataclass(frozen=True)
class KindConfig:
    enabled: bool
    paths: Tuple[str, ...]
    options: Mapping[str, Any]
    path_missing: bool = False  # enabled explicitly, but no path and no public default: a notice


@dataclass(frozen=True)
class RoyalRenderConfig:
    root: Optional[str]
    module: str
    module_path: Tuple[str, ...]
    read_timeout: float
    timezone: timezone.Timezone
    python: Optional[str]
    worker_memory_limit: int
    kinds: Mapping[str, KindConfig]


_SIZE = re.compile(r"^\s*([0-9]+)\s*(B|KiB|MiB|GiB|TiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def parse_size(value) -> int:
    """Bytes from ``4GiB``, ``512MiB`` or a plain number of bytes; 0 means no limit."""
    match = _SIZE.match(str(value)) if not isinstance(value, bool) else None
    if not match:
        raise ValueError("use e.g. 4GiB, 512MiB, or 0 for no limit")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def _paths(value) -> Tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value or ())


def _kind_schema(kind: Kind) -> Struct:
    """A kind with a public default path is read unless disabled; one without, when its path is set."""
    def build(enabled, path, **options):
        paths = _paths(path)
        wanted = bool(kind.default_path or paths) if enabled is None else enabled
        return KindConfig(enabled=wanted, paths=paths, options=options,
                          path_missing=bool(enabled) and not paths and not kind.default_path)

    where = "default %s (relative to root)" % kind.default_path if kind.default_path else "no public default: set it"
    return Struct(
        {
            "enabled": Field(Boolean(), default=None,
                             doc="read this file kind; default: yes when it has a path (set, or a public default)"),
            "path": Field(Either(Glob(), ListOf(Glob())), doc="file or glob, or a list; " + where),
            **kind.extra_options,
        },
        build=build,
    )


def _schema() -> Struct:
    def build(root, module, module_path, read_timeout, timezone, python, worker_memory_limit, **kinds):
        return RoyalRenderConfig(root, module, tuple(module_path or ()), read_timeout, timezone, python,
                                 worker_memory_limit, kinds)

    return Struct(
        {
            "root": Field(String(), doc="RR's folder; default: $RR_ROOT (relink_lx.cfg honoured)"),
            "module": Field(String(), default="auto", doc="auto, a module name, or simulated (the stand-in)"),
            "module_path": Field(ListOf(String()), default=(), doc="folders to import the module from"),
            "read_timeout": Field(Duration(), default=30.0, doc="longest one file read may take"),
            "timezone": Field(Scalar("an IANA time zone name such as Europe/Berlin", timezone.parse),
                              default=timezone.Timezone(),
                              doc="zone of the RR server's local times; default: this machine's zone"),
            "python": Field(String(), doc="interpreter for the worker, for which RR ships a module; "
                                          "default: the exporter's own"),
            "worker_memory_limit": Field(Scalar("a size such as 4GiB, or 0", parse_size), default=4 << 30,
                                         doc="address-space limit of the worker; a read over it fails that file"),
            **{kind.name: Field(_kind_schema(kind), default=_kind_schema(kind).defaults()) for kind in KINDS},
        },
        build=build,
    )


def _wanted_paths(kind, config: KindConfig) -> List[str]:
    return list(config.paths) or ([kind.default_path] if kind.default_path else [])


def kind_paths(kind: Kind, config: KindConfig, root: Optional[str]) -> List[str]:
    """The kind's patterns as absolute paths; relative ones without a root are left out (a config notice)."""
    wanted = _wanted_paths(kind, config)
    if not root:
        return [path for path in wanted if os.path.isabs(path)]
    return [path if os.path.isabs(path) else os.path.join(root, path) for path in wanted]


def worker_settings(config: RoyalRenderConfig) -> WorkerSettings:
    """How to start the worker for this section (the daemon, rr-probe and backfill start it alike)."""
    return WorkerSettings(module=config.module, module_paths=config.module_path,
                          root=module.resolve_root(config.root), python=config.python or default_python(),
                          timezone=config.timezone, timeout=config.read_timeout,
                          memory_limit=config.worker_memory_limit)



def relative_to(config: RoyalRenderConfig, folder: str) -> RoyalRenderConfig:
    """A relative ``root`` is relative to the config file's folder (kind paths are relative to the root)."""
    return replace(config, root=os.path.join(folder, config.root)) if config.root else config


def _check_root(config: RoyalRenderConfig) -> List[ConfigNotice]:
    root = module.resolve_root(config.root)
    relying = [kind.name for kind in KINDS if kind.default_path and config.kinds[kind.name].enabled
               and not config.kinds[kind.name].paths]
    if root is None and not relying:
        return []  # every kind has a path of its own
    if root is None:
        return [ConfigNotice("root", "no root and no $RR_ROOT: %s have no path" % ", ".join(relying))]
    if not os.path.isdir(root):
        return [ConfigNotice("root", "folder %s does not exist (RR not mounted?)" % root)]
    return []


def _check_kind(kind, kind_config: KindConfig, root: Optional[str]) -> List[ConfigNotice]:
    if kind_config.path_missing:
        return [ConfigNotice(kind.name + ".enabled", "true, but no path: where RR keeps these files is not public; "
                                                     "set royalrender.%s.path" % kind.name)]
    notices = [ConfigNotice(kind.name + ".path", "%s is relative, but there is no root" % path)
               for path in kind_config.paths if not os.path.isabs(path) and root is None]
    for pattern in kind_paths(kind, kind_config, root):
        notices += [ConfigNotice(kind.name + ".path", problem) for problem in glob_problems(pattern)]
        folder = missing_root(pattern)
        if folder is not None and (root is None or os.path.isdir(root)):
            notices.append(ConfigNotice(kind.name + ".path", "folder %s does not exist" % folder))
    return notices


def check_interpreter(config: RoyalRenderConfig) -> Tuple[Optional[interpreter.Version], List[ConfigNotice]]:
    """The worker's interpreter as it will run (``royalrender.python``, else the exporter's own): its version (None
    when it does not run) and its problems. Errors: missing, not running, older than 3.7, or a module named for
    another Python (the worker refuses it); warnings: RR has no module build for its version."""
    settings = worker_settings(config)
    folders = module.library_folders(settings.root, settings.module_paths)
    found, problems = interpreter.problems(settings.python, config.python is not None, worker_environment(settings),
                                           module.installed_versions(folders), folders,
                                           vendor=config.module == module.AUTO)
    notices = [ConfigNotice("python", message, error=error) for message, error in problems]
    if found is not None and not any(n.error for n in notices) and config.module != module.SIMULATED:
        wrong = module.wrong_build(config.module, found, settings.python)
        if wrong:
            notices.append(ConfigNotice("module", wrong, error=True))
    return found, notices


def _check_module(config: RoyalRenderConfig) -> List[ConfigNotice]:
    """Folders the worker cannot import RR's module from: a ``module_path`` that is missing, and with ``module:
    auto`` no folder at all (neither ``module_path`` nor RR's lib folder under an existing root)."""
    notices = [ConfigNotice("module_path[%d]" % index, "folder %s does not exist: RR's module cannot be imported "
                                                       "from it (a share not mounted? a typo?)" % folder)
               for index, folder in enumerate(config.module_path) if not os.path.isdir(folder)]
    root = module.resolve_root(config.root)
    if config.module != module.AUTO or module.library_folders(root, config.module_path):
        return notices
    if root is not None and os.path.isdir(root):
        notices.append(ConfigNotice("module", "auto, but RR's lib folder %s does not exist and no module_path does: "
                                              "the worker cannot find RR's module (libpyRR3X_datafiles); set "
                                              "royalrender.module_path to the folder that holds it"
                                    % module.default_module_paths(root)[0]))
    elif root is None and not config.module_path:
        notices.append(ConfigNotice("module", "auto, but there is no root ($RR_ROOT) and no module_path: the worker "
                                              "cannot find RR's module; set royalrender.root or module_path"))
    return notices


def check(config: RoyalRenderConfig) -> List[ConfigNotice]:
    notices = check_interpreter(config)[1] + _check_root(config) + _check_module(config)
    root = module.resolve_root(config.root)
    enabled = [kind for kind in KINDS if config.kinds[kind.name].enabled]
    for kind in enabled:
        notices += _check_kind(kind, config.kinds[kind.name], root)
    if not any(kind_paths(kind, config.kinds[kind.name], root) for kind in enabled):
        notices.append(ConfigNotice("", "nothing to read: no file kind has a path"))
    return notices


def paths(config: RoyalRenderConfig) -> List[ConfiguredPath]:
    """The root, module folders, interpreter and every kind's patterns, for the checks every source shares."""
    root = module.resolve_root(config.root)
    found = [ConfiguredPath("root", root)] if root else []
    found += [ConfiguredPath("module_path[%d]" % index, folder) for index, folder in enumerate(config.module_path)]
    # a name is judged where PATH finds it here: a root shell's PATH (pyenv's shims under /root) is not the unit's
    python = config.python if config.python and os.path.isabs(config.python) else shutil.which(config.python or "")
    if config.python and python:
        found.append(ConfiguredPath("python", python))
    for kind in KINDS:
        if config.kinds[kind.name].enabled:
            found += [ConfiguredPath(kind.name + ".path", pattern, pattern=True)
                      for pattern in kind_paths(kind, config.kinds[kind.name], root)]
    return found


SCHEMA = _schema()
