"""Finds and imports Royal Render's Python module, as the vendor's own scripts do.

The module is a compiled extension shipped inside the RR installation, one
build per Python version (``libpyRR39``, ``libpyRR310``, ``libpyRR311`` ...,
with ``_datafiles`` variants; ``libpyRR2`` for Python 2). It is imported only
inside the worker process (``exporter.royalrender.vendor.worker``), never in
the daemon itself. The daemon uses the rest of this module (finding the
root, listing the builds an installation has) without importing the vendor's.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from types import ModuleType
from typing import List, Optional, Sequence, Tuple

SIMULATED = "simulated"
AUTO = "auto"
#: Python versions the vendor ships modules for (docs/royalrender.md).
VENDOR_PYTHON_VERSIONS = ("2.7", "3.7", "3.9", "3.10", "3.11", "3.13")
#: The oldest Python the worker runs on (its code uses 3.7's syntax and standard library).
MINIMUM_PYTHON = (3, 7)


class ModuleLoadError(Exception):
    """No RR module could be imported; the message lists every name and folder tried."""


def candidate_names(version: Tuple[int, int] = sys.version_info[:2]) -> List[str]:
    """The vendor's module names for this Python, in the order the vendor's scripts try them."""
    tag = "%d%d" % version
    return ["libpyRR%s_datafiles" % tag, "libpyRR%s" % tag, "libpyRR2_datafiles", "libpyRR2"]


def resolve_root(configured: Optional[str]) -> Optional[str]:
    """RR's folder: configured, else ``$RR_ROOT``; a ``Root=`` line in relink_lx.cfg redirects it."""
    root = configured or os.environ.get("RR_ROOT") or None
    if not root:
        return None
    relink = os.path.join(root, "sub", "cfg_global", "relink_lx.cfg")
    try:
        with open(relink, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, sep, value = line.strip().partition("=")
                if sep and key.strip().lower() == "root" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return root


def _bin_folder(root: str) -> str:
    """The vendor's folder of compiled libraries for this OS."""
    if sys.platform.startswith("win"):
        return os.path.join(root, "bin", "win64")
    if sys.platform == "darwin":
        return os.path.join(root, "bin", "mac64", "lib")
    return os.path.join(root, "bin", "lx64", "lib")


def default_module_paths(root: Optional[str], version: Tuple[int, int] = sys.version_info[:2]) -> List[str]:
    """The vendor's bin folders for this OS and Python version."""
    if not root:
        return []
    base = _bin_folder(root)
    dotted, compact = "%d.%d" % version, "%d%d" % version
    return [base, os.path.join(base, "python", dotted), os.path.join(base, "python", compact)]


def library_folders(root: Optional[str], configured: Sequence[str]) -> List[str]:
    """Folders for the worker's ``LD_LIBRARY_PATH``: a vendor module may need sibling libraries from them."""
    folders = list(configured)
    if root:
        base = _bin_folder(root)
        python = os.path.join(base, "python")
        folders.append(base)
        if os.path.isdir(python):
            folders += sorted(os.path.join(python, name) for name in os.listdir(python))
    return [folder for folder in dict.fromkeys(folders) if os.path.isdir(folder)]


#: The vendor's module names carry the Python they are built for: libpyRR2 (Python 2), libpyRR39, libpyRR310 ...,
#: each with a ``_datafiles`` variant. This is the one place that reads that tag.
_NAMED = r"libpyRR(?P<tag>\d+)(?:_datafiles)?"
_NAME = re.compile(r"^%s$" % _NAMED)
_BUILD = re.compile(r"^%s(?:\..*)?\.(?:so|pyd|py|dylib)$" % _NAMED)


def _tag_python(tag: str) -> Tuple[int, ...]:
    """The Python a tag names: "2" is (2,), any Python 2; "39" is (3, 9); "310" is (3, 10)."""
    return (int(tag),) if len(tag) == 1 else (int(tag[0]), int(tag[1:]))


def _shown(python: Tuple[int, ...]) -> str:
    return "2.7" if python == (2,) else ".".join(str(part) for part in python)


def build_python(name: str) -> Optional[Tuple[int, ...]]:
    """The Python a module name says it is built for, from its tag; None for a name without one."""
    match = _NAME.match(name)
    return _tag_python(match.group("tag")) if match else None


def wrong_build(name: str, version: Tuple[int, ...], interpreter: str) -> Optional[str]:
    """Why the module ``name`` cannot be imported by Python ``version`` (``interpreter``): its tag names another
    Python. None when the tag matches, or the name has none (a module named otherwise is tried as it is)."""
    built = build_python(name)
    if built is None or tuple(version[:len(built)]) == built:
        return None
    running = "%d.%d" % tuple(version[:2])
    pick = candidate_names((version[0], version[1]))[0]
    if built < MINIMUM_PYTHON:
        return ("%s is RR's module for Python %s, which the worker cannot run (it needs %d.%d or later); the worker "
                "runs Python %s (%s): set royalrender.module to auto, or to %s, the build for Python %s"
                % (name, _shown(built), MINIMUM_PYTHON[0], MINIMUM_PYTHON[1], running, interpreter, pick, running))
    return ("%s is RR's module for Python %s, but the worker runs Python %s (%s): set royalrender.python to a "
            "Python %s interpreter, or royalrender.module to auto (for Python %s it picks %s)"
            % (name, _shown(built), running, interpreter, _shown(built), running, pick))


def installed_versions(folders: Sequence[str]) -> List[str]:
    """The Python versions ("3.11") the installation has a module build for, from the files in ``folders``."""
    versions = set()
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            match = _BUILD.match(name)
            if match:
                versions.add(_shown(_tag_python(match.group("tag"))))
    return sorted(versions, key=lambda v: tuple(int(p) for p in v.split(".")))


def load(spec: str, paths: Sequence[str]) -> ModuleType:
    """Imports the RR module: ``simulated`` (the stand-in), ``auto``, or a module name."""
    if spec == SIMULATED:
        from exporter.simulation import standin

        return standin
    names = candidate_names() if spec == AUTO else [spec]
    wrong = None if spec == AUTO else wrong_build(spec, sys.version_info[:2], sys.executable)
    if wrong:  # refused before importing: a build for another Python can crash the process that imports it
        raise ModuleLoadError("royalrender.module: " + wrong)
    for path in reversed(list(paths)):
        if path not in sys.path:
            sys.path.insert(0, path)
    importlib.invalidate_caches()
    failures = []
    found_but_broken = False
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                found_but_broken = True  # the module is there; something it imports is not
            failures.append("%s (%s)" % (name, exc))
        except BaseException as exc:  # noqa: BLE001 - a compiled module's import can raise anything
            found_but_broken = True
            failures.append("%s (found, but its import failed: %s: %s)" % (name, type(exc).__name__, exc))
    advice = ("A module was found but did not import: check that it is the build for this Python and that the "
              "libraries it needs are in its folder (it is on LD_LIBRARY_PATH)." if found_but_broken else
              "The vendor ships modules for Python %s; run the worker with one of those (royalrender.python), "
              "set royalrender.module_path to the folder holding the module, or royalrender.module to its name."
              % ", ".join(VENDOR_PYTHON_VERSIONS))
    raise ModuleLoadError(
        "cannot import Royal Render's Python module for Python %d.%d.\n"
        "  names tried: %s\n  folders searched first: %s\n  %s"
        % (sys.version_info[0], sys.version_info[1], "; ".join(failures),
           ", ".join(paths) or "(none: no RR root known)", advice)
    )
