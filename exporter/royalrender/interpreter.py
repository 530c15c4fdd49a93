"""The worker's interpreter, ``royalrender.python``: does it run, which Python is it, does RR ship a module for it.

Asked by ``--check-config`` and ``rr-probe`` (through ``config.check``), and by
the worker's start path when a worker did not come up, so that the reason is
said in the configuration's words ("is Python 2.7.3; the worker needs 3.7")
instead of "failed while importing the module".

The question is ``python -c`` printing ``sys.version_info``, which every
Python since 2 answers, with a deadline: an interpreter that hangs (a stale
share) cannot hang the caller. It runs with the worker's environment, so a
library RR puts on ``LD_LIBRARY_PATH`` that breaks the interpreter shows here too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from typing import Dict, List, Optional, Sequence, Tuple

from exporter.royalrender.vendor import module
from exporter.status import running_as

KEY = "royalrender.python"
CHECK_TIMEOUT_SECONDS = 10.0
_MARK = "renderfarm-exporter-python"
#: Python 2 and 3 alike; the mark tells the answer apart from anything a sitecustomize prints.
_ASK = "import sys; sys.stdout.write('%s %%d.%%d.%%d\\n' %% tuple(sys.version_info[:3]))" % _MARK

Version = Tuple[int, int, int]


class InterpreterProblem(Exception):
    """The interpreter cannot run the worker at all; the message says why and what to set."""


def shown(python: str, configured: bool) -> str:
    """How messages name the interpreter; the daemon's own when ``royalrender.python`` is not set."""
    return python if configured else "%s (the exporter's own: royalrender.python is not set)" % python


def version(python: str, env: Optional[Dict[str, str]] = None, timeout: float = CHECK_TIMEOUT_SECONDS,
            name: Optional[str] = None) -> Version:
    """The interpreter's Python version; raises InterpreterProblem when it is missing or does not run as one.

    ``name``: how messages call it (default: ``python``)."""
    name = name or python
    fix = "set royalrender.python to a Python %d.%d or later for which RR ships a module" % module.MINIMUM_PYTHON
    if os.sep not in python:
        if shutil.which(python, path=(env or os.environ).get("PATH")) is None:
            raise InterpreterProblem("%s is not found on PATH: %s (a full path)" % (name, fix))
    elif not os.path.exists(python):
        raise InterpreterProblem(_unreachable(python, name, fix))
    elif os.path.isdir(python):
        raise InterpreterProblem("%s is a folder, not an interpreter: %s" % (name, fix))
    elif not os.access(python, os.X_OK):
        raise InterpreterProblem("%s is not executable: make it executable (chmod +x), or %s" % (name, fix))
    try:  # in its own process group: a wrapper script's children are killed with it at the deadline
        asked = subprocess.Popen([python, "-c", _ASK], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True)
    except PermissionError as exc:
        raise InterpreterProblem("%s cannot be run by the exporter, which runs as %s (%s): %s" % (
            name, running_as(), exc.strerror or exc, fix)) from None
    except OSError as exc:
        raise InterpreterProblem("%s cannot be run (%s): %s" % (name, exc.strerror or exc, fix)) from None
    try:
        output = asked.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(asked.pid, signal.SIGKILL)
        asked.wait()
        if asked.stdout is not None:
            asked.stdout.close()
        raise InterpreterProblem("%s did not say its version within %.0f s (a hanging interpreter, or a slow "
                                 "share?): %s" % (name, timeout, fix)) from None
    text = output.decode("utf-8", "replace")
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == _MARK:
            try:
                major, minor, micro = (int(part) for part in words[1].split("."))
            except ValueError:
                break
            return major, minor, micro
    said = " ".join(text.split())
    raise InterpreterProblem("%s does not run as a Python interpreter: asked its version, it exited with code %s%s: "
                             "%s" % (name, asked.returncode, ", saying: " + said[:300] if said else "", fix))


def _unreachable(python: str, name: str, fix: str) -> str:
    """Why ``os.path.exists`` says no: the path does not exist, or a folder on it is closed to the user the
    exporter runs as (a Python under /root or /home, installed by someone else than the service's user)."""
    try:
        os.stat(python)
    except PermissionError:
        return ("%s cannot be reached by the exporter, which runs as %s: a folder of its path is closed to it "
                "(a Python under /root or /home?): %s the service can reach" % (name, running_as(), fix))
    except OSError:
        pass
    return "%s does not exist: %s" % (name, fix)


def _wanted(installed: Sequence[str]) -> str:
    usable = [v for v in installed or module.VENDOR_PYTHON_VERSIONS
              if tuple(int(p) for p in v.split(".")) >= module.MINIMUM_PYTHON]
    if installed:
        return "this installation has builds for %s" % ", ".join(usable or ["no Python 3"])
    return "RR ships builds for %s" % ", ".join(usable)


def too_old(name: str, found: Version, installed: Sequence[str]) -> Optional[str]:
    """Why an interpreter of version ``found`` cannot run the worker, or None. ``installed``: the Python versions the
    RR installation has module builds for (empty: not known)."""
    if found[:2] >= module.MINIMUM_PYTHON:
        return None
    return ("%s is Python %s; the worker needs %d.%d or later: point royalrender.python at the python3.X for "
            "which RR ships libpyRR3X_datafiles (%s)"
            % (name, ".".join(str(part) for part in found), module.MINIMUM_PYTHON[0], module.MINIMUM_PYTHON[1],
               _wanted(installed)))


def no_build(name: str, found: Version, installed: Sequence[str], folders: Sequence[str]) -> Optional[str]:
    """Why RR likely has no module for this interpreter, or None: the installation's builds (when it has any) or
    else the vendor's list lack its version."""
    dotted = "%d.%d" % found[:2]
    if installed and dotted not in installed:
        return ("%s is Python %s, but the RR installation has module builds for %s only (in %s): point "
                "royalrender.python at one of those" % (name, dotted, ", ".join(installed), ", ".join(folders)))
    if not installed and dotted not in module.VENDOR_PYTHON_VERSIONS:
        return ("%s is Python %s, for which RR ships no module (%s): point royalrender.python at one of those"
                % (name, dotted, _wanted(())))
    return None


def start_problem(python: str, env: Dict[str, str], installed: Sequence[str]) -> Optional[str]:
    """Why a worker under ``python`` cannot start, as ``royalrender.python: ...``; None if the interpreter is fine
    (then the module or the worker is to blame). For the worker's start path, after a start failed."""
    try:
        found = version(python, env)
    except InterpreterProblem as exc:
        return "%s: %s" % (KEY, exc)
    old = too_old(python, found, installed)
    return "%s: %s" % (KEY, old) if old else None


def problems(python: str, configured: bool, env: Dict[str, str], installed: Sequence[str],
             folders: Sequence[str], vendor: bool) -> Tuple[Optional[Version], List[Tuple[str, bool]]]:
    """The interpreter's version (None if it does not run) and what is wrong with it, as (message, is an error).
    ``vendor``: the worker is to load RR's module (not the stand-in), so RR must have a build for it."""
    name = shown(python, configured)
    try:
        found = version(python, env, name=name)
    except InterpreterProblem as exc:
        return None, [(str(exc), True)]
    old = too_old(name, found, installed)
    if old:
        return found, [(old, True)]
    missing = no_build(name, found, installed, folders) if vendor else None
    return found, [(missing, False)] if missing else []
