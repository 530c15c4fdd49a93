"""``renderfarm-exporter rr-probe``: what the exporter sees of a real RR installation.

It starts the worker exactly as the daemon does (interpreter, module name
and folders, time zone, limits), then reports:

- which Python versions the installation has module builds for, and which
  interpreter the worker runs: its version, and what ``--check-config``
  says of it (missing, not running, older than 3.7, no build for it, a
  module named for another Python);
- for every documented class and member: present, missing, or raised (with
  the error); members the reference does not give a class are *optional*;
- every configured file read through the worker: loaded (with the plain
  data, the members that failed, and the series it would export) or the
  vendor's error;
- what the vendor module printed.

"NOT LOADED" means the import failed, nothing else. The exit code says
whether everything the configuration needs works (see ``run``). The output
is meant to be pasted into a bug report.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any, Dict, List, Mapping, TextIO

from exporter import __version__
from exporter.exposition import render_section
from exporter.royalrender import render_time, server_stats
from exporter.royalrender.client import ModuleNotLoaded, WorkerClient, WorkerCrashed, WorkerError, WorkerStartFailed
from exporter.royalrender.config import KindConfig, RoyalRenderConfig, check_interpreter, kind_paths, worker_settings
from exporter.royalrender.contract import Kind
from exporter.royalrender.kinds import KINDS
from exporter.royalrender.reader import MemberFailures, TimeChecks, file_reader, worker_options, written
from exporter.royalrender.timezone import Timezone
from exporter.royalrender.vendor import module
from exporter.royalrender.vendor.daily_stats import DIMENSIONS
from exporter.wholefile import ReadFailed

DETAILED_FILES = 3
#: each crash of the API check adds one avoided member, so this many tries reach every member
API_CHECK_TRIES = 40

EXIT_OK, EXIT_NOT_LOADED, EXIT_PROBLEMS = 0, 1, 3


def _with_readable_times(value: Any, zone: Timezone, key: str = "") -> Any:
    """Adds a local date beside every Unix time, so a reader of the report can check slot selection."""
    if isinstance(value, dict):
        return {k: _with_readable_times(v, zone, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_readable_times(v, zone) for v in value]
    if isinstance(value, (int, float)) and (key == "time" or key.endswith("_time")) and value > 0:
        return "%s (%s)" % (value, zone.show(value))
    return value


def _header(config, settings, out: TextIO) -> None:
    folders = module.library_folders(settings.root, settings.module_paths)
    out.write("renderfarm-exporter %s rr-probe\n" % __version__)
    out.write("exporter's Python %s on %s\n" % (platform.python_version(), platform.platform()))
    out.write("RR root: %s (configured: %s, RR_ROOT: %s)\n" % (settings.root, config.root, os.environ.get("RR_ROOT")))
    out.write("module: %s; folders configured: %s\n" % (config.module, ", ".join(settings.module_paths) or
                                                         "(none: the worker searches RR's bin folders)"))
    out.write("module builds in the installation, for Python: %s (in %s)\n" % (
        ", ".join(module.installed_versions(folders)) or "none found", ", ".join(folders) or "no folder found"))
    found, notices = check_interpreter(config)
    out.write("worker interpreter: %s (%s)\n" % (settings.python, "Python %d.%d.%d" % found if found else
                                                  "does not run"))
    out.writelines("  %s: royalrender.%s: %s\n" % ("ERROR" if n.error else "warning", n.key, n.message)
                   for n in notices)
    out.write("time zone of RR's local times: %s\n\n" % settings.timezone.describe())


def _check_api(worker: WorkerClient) -> Dict[str, Any]:
    """The API check, run again after each member that crashed the worker (it is skipped next time)."""
    for _ in range(API_CHECK_TRIES):
        try:
            return worker.check_api()
        except WorkerCrashed as exc:
            if exc.step is None:
                raise
    return worker.check_api()


def _module_version(worker: WorkerClient) -> str:
    """The version, or what asking for it did: the reference says it may need a prior call."""
    try:
        return str(worker.module_version())
    except WorkerCrashed as exc:
        return "unknown: asking crashed the worker (%s)" % exc


def _member_lines(found: Mapping[str, str], optional: bool) -> List[str]:
    lines = []
    for member, state in found.items():
        if state == "present":
            continue
        what = ("optional, " if optional else "") + state
        lines.append("      %s: %s\n" % (member, what))
    return lines


def _report_api(worker: WorkerClient, out: TextIO) -> List[str]:
    """Prints the module and its API; returns the documented classes that are missing or unusable."""
    api = _check_api(worker)
    info = worker.module_info
    out.write("Module loaded: %s\n  file: %s\n  worker's Python: %s\n  getRRModuleVersion(): %s\n" % (
        info.get("module"), info.get("file"), info.get("python"), _module_version(worker)))
    missing = [name for name, state in api["functions"].items() if state != "present"]
    out.write("  module functions missing: %s\n" % (", ".join(missing) or "none"))
    unusable = []
    for name, found in api["classes"].items():
        documented = found["documented"]
        if not found["present"]:
            state = "MISSING" if documented else "not present (optional: not in the Python reference)"
        elif found.get("error"):
            state = found["error"]
        else:
            bad = [m for m, s in found["members"].items() if s != "present"]
            state = "ok" if not bad else "%d of %d documented members not usable" % (len(bad), len(found["members"]))
        if documented and (not found["present"] or found.get("error")):
            unusable.append(name)
        out.write("  %-22s %s\n" % (name, state))
        out.writelines(_member_lines(found["members"], optional=False))
        out.writelines(_member_lines(found["optional"], optional=True))
    out.write("\n")
    return unusable


def _report_kind(kind: Kind, kind_config: KindConfig, settings, worker: WorkerClient, out: TextIO) -> List[str]:
    """Prints one kind's files; returns its problems."""
    out.write("== %s (%s)\n" % (kind.name, kind.vendor_class))
    if not kind_config.enabled:
        out.write("   disabled in the configuration\n\n")
        return []
    patterns = kind_paths(kind, kind_config, settings.root)
    if not patterns:
        out.write("   no path: %s\n\n" % ("set royalrender.root or RR_ROOT" if kind.default_path else
                                         "its location is not public; set royalrender.%s.path" % kind.name))
        return ["%s: no path" % kind.name] if kind.default_path else []
    files = sorted(file_reader(kind, patterns, kind_config.options, worker, MemberFailures(), TimeChecks()).selected())
    out.write("   patterns: %s\n   files read: %d\n" % (", ".join(patterns), len(files)))
    problems = [] if files else ["%s: no file matches %s" % (kind.name, ", ".join(patterns))]
    for path in files[:DETAILED_FILES]:
        problems += _report_file(kind, kind_config.options, path, worker, settings.timezone, out)
    rest = files[DETAILED_FILES:]
    if rest:
        outcomes = {path: _outcome(kind, kind_config.options, path, worker) for path in rest}
        failed = [path for path, outcome in outcomes.items() if outcome == "not loaded"]
        partial = [path for path, outcome in outcomes.items() if outcome == "members failed"]
        out.write("   ... %d more files: %d loaded (%d with members failing), %d not loaded%s\n" % (
            len(rest), len(rest) - len(failed), len(partial), len(failed),
            (": " + ", ".join(failed[:10])) if failed else ""))
        problems += ["%s: not loaded" % path for path in failed]
        problems += ["%s: loaded, but members failed" % path for path in partial]
    out.write("\n")
    return problems


def _outcome(kind: Kind, options: Mapping[str, Any], path: str, worker: WorkerClient) -> str:
    """"loaded", "members failed" (loaded, some values dropped) or "not loaded"."""
    try:
        return "members failed" if worker.read(kind.name, path, worker_options(options)).member_failures else "loaded"
    except WorkerError:
        return "not loaded"


def _report_file(kind: Kind, options: Mapping[str, Any], path: str, worker: WorkerClient, zone: Timezone,
                 out: TextIO) -> List[str]:
    st = os.stat(path)
    out.write("   -- %s (%d bytes, modified %s)\n" % (path, st.st_size, zone.show(st.st_mtime)))
    try:
        when = written(path, worker)
        reply = worker.read(kind.name, path, worker_options(options))
    except (WorkerError, ReadFailed) as exc:
        out.write("      NOT READ: %s\n" % exc)
        return ["%s: %s" % (path, exc)]
    for member, error in sorted(reply.member_failures.items()):
        out.write("      member failed, its values are not exported: %s: %s\n" % (member, error))
    data = kind.interpret(reply.data, when)
    for title, shown in (("loaded; what the module said", reply.data),
                         ("as the exporter reads it (times in RR's zone)", _with_readable_times(data, zone))):
        text = json.dumps(shown, indent=2, sort_keys=True, default=str)
        out.write("      %s:\n" % title + "".join("      " + line + "\n" for line in text.splitlines()))
    problems = ["%s: member %s failed" % (path, member) for member in sorted(reply.member_failures)]
    problems += _report_interpretation(path, data, out)
    exposition = render_section(kind.families({path: kind.budget(options)(data)}, options)).text.decode()
    out.write("      would export:\n" + "".join("      " + line + "\n" for line in exposition.splitlines()
                                               if not line.startswith("#")))
    return problems


def _report_interpretation(path: str, data: Mapping[str, Any], out: TextIO) -> List[str]:
    """The shape decided (which names land under which dimension) and the check of the file's times."""
    shape, check = data.get("shape"), data.get("check")
    if shape is not None:
        out.write("      job type ids %s, because %s\n" % (shape["type_ids"], shape["evidence"]))
        for dimension in DIMENSIONS:
            out.write("      %s: %s\n" % (dimension, ", ".join(sorted(data[dimension])) or "(none current)"))
    if check is None or check["offset"] is None:
        return []
    out.write("      newest time minus modification time: %+.0f s%s\n" % (
        check["offset"], "; latest values NOT CURRENT, not exported" if check["stale"] else ""))
    if check["implausible"] is None:
        return []
    out.write("      IMPLAUSIBLE: %s (royalrender.timezone)\n" % check["implausible"])
    return ["%s: royalrender.timezone: %s" % (path, check["implausible"])]


def _newest_data(kind: Kind, rr: RoyalRenderConfig, settings, worker: WorkerClient) -> Any:
    """The worker's reply for the kind's most recently changed file, None when there is none or it fails."""
    kind_config = rr.kinds[kind.name]
    patterns = kind_paths(kind, kind_config, settings.root) if kind_config.enabled else []
    files = sorted(file_reader(kind, patterns, kind_config.options, worker, MemberFailures(), TimeChecks()).selected(),
                   key=_mtime)
    try:
        return worker.read(kind.name, files[-1], worker_options(kind_config.options)).data if files else None
    except WorkerError:
        return None


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _report_frame_time_unit(rr: RoyalRenderConfig, settings, worker: WorkerClient, out: TextIO) -> None:
    """Compares the server's average frame time (assumed seconds) with the render-time stats (PS·s): a ratio
    near 1 says frameTime is processor-seconds too (docs/royalrender.md, Units)."""
    server, render = (_newest_data(kind, rr, settings, worker) for kind in (server_stats.KIND, render_time.KIND))
    frame = None if server is None else next((used["slot"].get("average_frame_seconds") for walk in server["walks"]
                                              for used in walk["used"]), None)
    means = sorted(layer["mean"] for project in (render or {}).get("projects", ()) for layer in project["layers"]
                   if layer["mean"])
    out.write("Frame time unit: ")
    if not frame or not means:
        out.write("not checked (needs server_stats with a frame time and render_time with frame times)\n\n")
        return
    median = means[len(means) // 2]
    out.write("server_stats frameTime %g, render_time stats' median %g PS*s, ratio %.2f: %s\n\n" % (
        frame, median, frame / median, "frameTime looks like processor-seconds, not seconds: "
        "royalrender_average_frame_time_seconds overstates by the cores a frame used" if 0.5 <= frame / median <= 2
        else "far from 1, so frameTime is probably seconds, as assumed (or the jobs differ)"))


def _report_vendor_output(worker: WorkerClient, out: TextIO) -> None:
    lines = list(worker.vendor_output)
    out.write("What the vendor module printed (%d lines):\n" % len(lines))
    out.writelines("   | %s\n" % line for line in lines)
    out.write("\n")


def _report_problems(problems: List[str], out: TextIO) -> int:
    if not problems:
        out.write("Everything the configuration needs works.\n")
        return EXIT_OK
    out.write("Problems (%d):\n" % len(problems) + "".join("  - %s\n" % p for p in problems))
    return EXIT_PROBLEMS


def run(rr: RoyalRenderConfig, out: TextIO = sys.stdout) -> int:
    """``Source.probe``: prints the report. 0: everything configured works; 1: the module did not import or
    the worker did not start; 3: the module loaded but something configured does not work (listed)."""
    settings = worker_settings(rr)
    _header(rr, settings, out)
    worker = WorkerClient(settings)
    try:
        try:
            problems = ["%s: class missing or unusable" % name for name in _report_api(worker, out)]
        except ModuleNotLoaded as exc:
            out.write("Module NOT LOADED:\n%s\n" % exc)
            return EXIT_NOT_LOADED
        except WorkerStartFailed as exc:
            out.write("The worker did not start: %s\n" % exc)
            return EXIT_NOT_LOADED
        except WorkerError as exc:
            out.write("The worker could not check the module: %s\n" % exc)
            return EXIT_PROBLEMS
        for kind in KINDS:
            problems += _report_kind(kind, rr.kinds[kind.name], settings, worker, out)
        _report_frame_time_unit(rr, settings, worker, out)
    finally:
        worker.close()
        _report_vendor_output(worker, out)
    code = _report_problems(problems, out)
    out.flush()
    return code
