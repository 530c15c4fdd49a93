"""``renderfarm-exporter rr-probe``: what the exporter sees of a real RR installation.

It loads the vendor's module exactly as the daemon does (in the worker, with
the configured module name and folders), reports which documented classes
and members it has, then reads every configured file through the worker and
prints what was loaded (or the vendor's ``getError()`` text), array sizes,
the latest valid slot and the values the exporter would export. Its output
is meant to be pasted into a bug report.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Any, Dict, TextIO

from exporter import __version__
from exporter.exposition import render_section
from exporter.royalrender import module
from exporter.royalrender.kinds import KINDS
from exporter.royalrender.reader import RrFileReader
from exporter.royalrender.worker import WorkerClient, WorkerError


DETAILED_FILES = 3


def _when(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(unix))


def _with_readable_times(value: Any, key: str = "") -> Any:
    """Adds a local date beside every Unix time, so a reader of the report can check slot selection."""
    if isinstance(value, dict):
        return {k: _with_readable_times(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_readable_times(v) for v in value]
    if isinstance(value, (int, float)) and (key == "time" or key.endswith("_time")) and value > 0:
        return "%s (%s)" % (value, _when(value))
    return value


def _header(config, root, module_paths, out: TextIO) -> None:
    out.write("renderfarm-exporter %s rr-probe\n" % __version__)
    out.write("Python %s on %s\n" % (platform.python_version(), platform.platform()))
    out.write("RR root: %s (configured: %s, RR_ROOT: %s)\n" % (root, config.root, os.environ.get("RR_ROOT")))
    out.write("module: %s; folders searched first: %s\n\n" % (config.module, ", ".join(module_paths) or "(none)"))


def _report_api(worker: WorkerClient, out: TextIO) -> None:
    api = worker.check_api()
    info = worker.module_info
    out.write("Module loaded: %s\n  file: %s\n  getRRModuleVersion(): %s\n" % (
        info.get("module"), info.get("file"), info.get("version")))
    missing_functions = [name for name, present in api["functions"].items() if not present]
    out.write("  module functions missing: %s\n" % (", ".join(missing_functions) or "none"))
    for name, found in api["classes"].items():
        if not found["present"]:
            state = "MISSING"
        elif found["missing"]:
            state = "lacks " + ", ".join(found["missing"])
        else:
            state = "ok"
        out.write("  %-22s %s%s\n" % (name, state, ("; " + found["error"]) if found.get("error") else ""))
    out.write("\n")


def _report_kind(kind, kind_config, root, worker: WorkerClient, out: TextIO) -> None:
    from exporter.royalrender import kind_paths

    out.write("== %s (%s)\n" % (kind.NAME, kind.VENDOR_CLASS))
    if not kind_config.enabled:
        out.write("   disabled in the configuration\n\n")
        return
    patterns = kind_paths(kind, kind_config, root)
    if not patterns:
        out.write("   no path: %s\n\n" % ("set royalrender.root or RR_ROOT" if kind.DEFAULT_PATH else
                                         "its location is not public; set royalrender.%s.path" % kind.NAME))
        return
    reader = RrFileReader(kind, patterns, kind_config.options, worker)
    files = sorted(reader.selected())
    out.write("   patterns: %s\n   files read: %d\n" % (", ".join(patterns), len(files)))
    for path in files[:DETAILED_FILES]:
        _report_file(kind, kind_config.options, path, worker, out)
    rest = files[DETAILED_FILES:]
    if rest:
        failed = [path for path in rest if not _loads(kind, kind_config.options, path, worker)]
        out.write("   ... %d more files: %d loaded, %d failed%s\n" % (
            len(rest), len(rest) - len(failed), len(failed), (": " + ", ".join(failed[:10])) if failed else ""))
    out.write("\n")


def _worker_options(options: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in options.items() if not hasattr(v, "pattern")}


def _loads(kind, options: Dict[str, Any], path: str, worker: WorkerClient) -> bool:
    try:
        worker.read(kind.NAME, path, _worker_options(options))
        return True
    except WorkerError:
        return False


def _report_file(kind, options: Dict[str, Any], path: str, worker: WorkerClient, out: TextIO) -> None:
    st = os.stat(path)
    out.write("   -- %s (%d bytes, modified %s)\n" % (path, st.st_size, _when(st.st_mtime)))
    try:
        data = worker.read(kind.NAME, path, _worker_options(options))
    except WorkerError as exc:
        out.write("      NOT LOADED: %s\n" % exc)
        return
    text = json.dumps(_with_readable_times(data), indent=2, sort_keys=True, default=str)
    out.write("      loaded; what was read:\n" + "".join("      " + line + "\n" for line in text.splitlines()))
    exposition = render_section(kind.families({path: data}, options)).text.decode()
    out.write("      would export:\n" + "".join("      " + line + "\n" for line in exposition.splitlines()
                                               if not line.startswith("#")))


def run(config, out: TextIO = sys.stdout) -> int:
    """Prints the report; 0 when the module loaded, 1 when it did not, 2 without a royalrender section."""
    rr = config.sources.get("royalrender")
    if rr is None:
        out.write("The configuration has no royalrender section: nothing to probe.\n")
        return 2
    root = module.resolve_root(rr.root)
    module_paths = list(rr.module_path) or module.default_module_paths(root)
    _header(rr, root, module_paths, out)
    worker = WorkerClient(rr.module, module_paths, rr.read_timeout)
    try:
        try:
            _report_api(worker, out)
        except WorkerError as exc:
            out.write("Module NOT LOADED:\n%s\n" % exc)
            return 1
        for kind in KINDS:
            _report_kind(kind, rr.kinds[kind.NAME], root, worker, out)
    finally:
        worker.close()
    out.flush()
    return 0
