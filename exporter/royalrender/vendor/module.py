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


_BUILD = re.compile(r"^libpyRR(?P<tag>\d+)(?:_datafiles)?(?:\..*)?\.(?:so|pyd|py|dylib)$")


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
                tag = match.group("tag")
                versions.add("2.7" if tag == "2" else "%s.%s" % (tag[0], tag[1:]))
    return sorted(versions, key=lambda v: tuple(int(p) for p in v.split(".")))


def load(spec: str, paths: Sequence[str]) -> ModuleType:
    """Imports the RR module: ``simulated`` (the stand-in), ``auto``, or a module name."""
    if spec == SIMULATED:
        from exporter.simulation import standin

        return standin
    names = candidate_names() if spec == AUTO else [spec]
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
