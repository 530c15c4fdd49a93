"""royalrender.python and royalrender.module against real interpreters: checked by --check-config and rr-probe,
explained when the worker cannot start, and a worker whose sys.path nothing around the daemon can shadow.

The old interpreter is Debian's Jython, a real Python 2.7 (Debian has no CPython 2 any more; scripts/test
installs it). The module named for another Python is a fake module file under a vendor name whose tag is not
this Python's, run by this machine's python3.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import REPO, value, wait_until

from exporter.royalrender import interpreter
from exporter.royalrender.client import ModuleNotLoaded, WorkerClient, WorkerSettings
from exporter.royalrender.timezone import Timezone
from exporter.royalrender.vendor import module

pytestmark = pytest.mark.inprocess

HERE = os.path.dirname(os.path.abspath(__file__))
JYTHON = shutil.which("jython")
MINE = "%d.%d" % sys.version_info[:2]
#: a vendor module name for a Python that is not the one running the tests
OTHER_TAG = "37" if sys.version_info[:2] != (3, 7) else "39"
OTHER_MODULE = "libpyRR%s_datafiles" % OTHER_TAG
OTHER_VERSION = "%s.%s" % (OTHER_TAG[0], OTHER_TAG[1:])
NO_RR_ROOT = {k: v for k, v in os.environ.items() if k != "RR_ROOT"}
FIX_OLD = ("the worker needs 3.7 or later: point royalrender.python at the python3.X for which RR ships "
           "libpyRR3X_datafiles")


def exporter(*args):
    return subprocess.run([sys.executable, "-m", "exporter", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=NO_RR_ROOT)


@pytest.fixture(scope="module")
def jython():
    """The real Python 2.7 and the version it reports (asked here by a plain run, not by the code under test)."""
    assert JYTHON, "jython (a real Python 2.7) is missing: scripts/test installs it"
    answer = subprocess.run([JYTHON, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                            capture_output=True, text=True, timeout=60, check=True)
    version = answer.stdout.strip()
    assert version.startswith("2.7."), version
    return JYTHON, version


def rr_root(tmp_path, builds=()):
    """An RR folder with a file at every kind's default path (so no pattern matches nothing), and empty module builds
    named ``builds`` in bin/lx64/lib."""
    root = tmp_path / "rr"
    (root / "sub" / "stats" / "server").mkdir(parents=True)  # the default folders of every kind
    (root / "sub" / "cfg_user").mkdir(parents=True)
    for path in ("stats/server_stats.db", "stats/server/2026_01_01.db", "stats/clientIPstats82.db",
                 "cfg_user/clientgroups.ini"):
        (root / "sub" / path).write_text("x")
    lib = root / "bin" / "lx64" / "lib"
    lib.mkdir(parents=True)
    for name in builds:
        (lib / name).write_text("")
    return root


@pytest.mark.ecosystem
def test_check_config_refuses_a_python_2_interpreter_with_the_fix(tmp_path, write_config, jython):
    python, version = jython
    root = rr_root(tmp_path, builds=["libpyRR39_datafiles.so", "libpyRR310_datafiles.so"])
    config = write_config("royalrender:\n  root: '%s'\n  python: %s\n" % (root, python))
    result = exporter("--check-config", "--config", config)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: royalrender.python: %s is Python %s; %s (this installation has builds for 3.9, 3.10)"
        % (python, version, FIX_OLD),
        "renderfarm-exporter: the configuration cannot work as written (errors above): exiting",
    ]


@pytest.mark.daemon
def test_check_config_errors_for_interpreters_that_cannot_run(tmp_path, write_config):
    text_file = tmp_path / "python3"
    text_file.write_text("not a program\n")
    fix = "set royalrender.python to a Python 3.7 or later for which RR ships a module"
    cases = {
        str(tmp_path / "missing" / "python3"): "%s does not exist: %s" % (tmp_path / "missing" / "python3", fix),
        "no-such-python3.9": "no-such-python3.9 is not found on PATH: %s (a full path)" % fix,
        str(tmp_path): "%s is a folder, not an interpreter: %s" % (tmp_path, fix),
        str(text_file): "%s is not executable: make it executable (chmod +x), or %s" % (text_file, fix),
        "/bin/false": "/bin/false does not run as a Python interpreter: asked its version, it exited with code 1: "
                      + fix,
    }
    for python, message in cases.items():
        config = write_config("royalrender:\n  module: simulated\n  python: '%s'\n  server_stats:\n    path: "
                              "'%s/ss.db'\n" % (python, tmp_path))
        result = exporter("--check-config", "--config", config)
        assert result.returncode == 2, (python, result.stderr)
        assert result.stderr.splitlines()[0] == "error: royalrender.python: " + message


def test_an_interpreter_that_hangs_is_given_up_on_at_the_deadline(tmp_path):
    # No real interpreter hangs on demand: this script stands in for one on a share that stopped answering.
    # It is a wrapper whose child hangs (as a launcher script's would): both are ended at the deadline.
    hanging, child = tmp_path / "python3", tmp_path / "child.pid"
    hanging.write_text("#!/bin/sh\nsleep 60 &\necho $! > '%s'\nwait\n" % child)
    hanging.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(interpreter.InterpreterProblem) as caught:
        interpreter.version(str(hanging), timeout=1.0)
    assert time.monotonic() - started < 10
    assert str(caught.value).startswith("%s did not say its version within 1 s (a hanging interpreter, or a "
                                        "slow share?)" % hanging)
    pid = int(child.read_text())
    wait_until(lambda: not os.path.exists("/proc/%d" % pid) or _zombie(pid), 10, "the hung child to be killed")


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.daemon
def test_check_config_warns_when_the_installation_has_no_build_for_the_interpreter(tmp_path, write_config):
    root = rr_root(tmp_path, builds=["%s.so" % OTHER_MODULE])
    config = write_config("royalrender:\n  root: '%s'\n" % root)
    result = exporter("--check-config", "--config", config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "%s is valid\n" % config
    assert result.stderr.splitlines() == [
        "warning: royalrender.python: %s (the exporter's own: royalrender.python is not set) is Python %s, but the "
        "RR installation has module builds for %s only (in %s): point royalrender.python at one of those"
        % (sys.executable, MINE, OTHER_VERSION, root / "bin" / "lx64" / "lib"),
    ]
    strict = exporter("--check-config", "--strict", "--config", config)
    assert strict.returncode == 2


def other_version_module(tmp_path):
    """A folder holding the fake vendor module under the name of another Python's build."""
    folder = tmp_path / "modules"
    folder.mkdir()
    shutil.copy(os.path.join(HERE, "fake_rr_module.py"), str(folder / (OTHER_MODULE + ".py")))
    return folder


@pytest.mark.daemon
def test_a_module_named_for_another_python_is_an_error_everywhere(tmp_path, write_config):
    folder = other_version_module(tmp_path)
    # the interpreter itself, not a launcher script (pyenv's shims): the worker names the one it runs in
    python, running = subprocess.run(
        ["python3", "-c", "import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert running != OTHER_VERSION
    expected = ("%s is RR's module for Python %s, but the worker runs Python %s (%s): set royalrender.python to a "
                "Python %s interpreter, or royalrender.module to auto (for Python %s it picks libpyRR%s_datafiles)"
                % (OTHER_MODULE, OTHER_VERSION, running, python, OTHER_VERSION, running, running.replace(".", "")))
    config = write_config("royalrender:\n  module: %s\n  module_path: ['%s']\n  python: %s\n  server_stats:\n"
                          "    path: '%s/ss.db'\n" % (OTHER_MODULE, folder, python, tmp_path))

    check = exporter("--check-config", "--config", config)
    assert check.returncode == 2
    assert "error: royalrender.module: " + expected in check.stderr.splitlines()

    probe = exporter("rr-probe", "--config", config)
    assert probe.returncode == 1, probe.stdout
    assert "worker interpreter: %s (Python %s." % (python, running) in probe.stdout
    assert "  ERROR: royalrender.module: %s\n" % expected in probe.stdout
    assert "Module NOT LOADED:\nroyalrender.module: %s\n" % expected in probe.stdout
    # refused before the import: the fake prints as soon as it is imported
    assert "What the vendor module printed (0 lines):" in probe.stdout and "FAKE-RR" not in probe.stdout

    settings = WorkerSettings(module=OTHER_MODULE, module_paths=(str(folder),), root=None, python=python,
                              timezone=Timezone(), timeout=30.0, memory_limit=0)
    worker = WorkerClient(settings)
    try:
        with pytest.raises(ModuleNotLoaded) as caught:
            worker.check_api()
    finally:
        worker.close()
    assert str(caught.value) == "royalrender.module: " + expected


@pytest.mark.ecosystem
def test_rr_probe_says_the_interpreter_is_too_old(tmp_path, write_config, jython):
    python, version = jython
    root = rr_root(tmp_path)
    result = exporter("rr-probe", "--config", write_config("royalrender:\n  root: '%s'\n  python: %s\n"
                                                           % (root, python)))
    assert result.returncode == 1, result.stdout
    reason = "%s is Python %s; %s (RR ships builds for 3.7, 3.9, 3.10, 3.11, 3.13)" % (python, version, FIX_OLD)
    assert "worker interpreter: %s (Python %s)\n  ERROR: royalrender.python: %s\n" % (python, version, reason) \
        in result.stdout
    assert "The worker did not start: royalrender.python: %s\n" % reason in result.stdout
    assert "failed while importing" not in result.stdout


@pytest.mark.ecosystem
def test_daemon_shows_why_rr_files_are_down_when_the_interpreter_is_too_old(tmp_path, start_daemon, write_config,
                                                                            jython):
    python, version = jython
    root = rr_root(tmp_path)
    path = str(root / "sub" / "stats" / "server_stats.db")
    daemon = start_daemon("--config", write_config("royalrender:\n  root: '%s'\n  python: %s\n" % (root, python)))
    reason = ("royalrender.python: %s is Python %s; %s (RR ships builds for 3.7, 3.9, 3.10, 3.11, 3.13)"
              % (python, version, FIX_OLD))
    wait_until(lambda: reason in daemon.get("/")[2].decode(), 30, "the status page to give the reason")
    page = daemon.get("/")[2].decode()
    row = page.split(path)[1].split("</tr>")[0]
    assert "DOWN" in row and reason in row and "failed while importing" not in row
    samples = daemon.samples()
    assert value(samples, "renderfarm_exporter_source_up", kind="royalrender_server_stats", path=path) == 0
    assert value(samples, "renderfarm_exporter_source_read_failures_total", kind="royalrender_server_stats",
                 path=path, reason="unavailable") >= 1
    assert ('level=error logger=exporter.cli msg="configuration cannot work as written" problem="royalrender.python: '
            '%s is Python %s; ' % (python, version)) in daemon.log()


VENDOR_RECORDING = '''
"""A module named like the vendor's: the stand-in, and a record of the worker's sys.path and json module."""
import json
import os
import sys

import exporter.simulation.standin as _standin

globals().update({k: v for k, v in vars(_standin).items() if not k.startswith("__")})
with open(os.environ["RECORD_WORKER_PATH"], "w") as _record:
    _record.write(json.dumps({"path": sys.path, "json": json.__file__}))
'''

STRAY = '''
with open(%r, "a") as _marker:
    _marker.write(__name__ + " from " + __file__ + "\\n")
'''


def test_nothing_in_the_working_folder_or_pythonpath_shadows_the_vendor_module_or_the_stdlib(tmp_path, monkeypatch):
    root = tmp_path / "rr"
    lib = root / "bin" / "lx64" / "lib"
    lib.mkdir(parents=True)
    name = module.candidate_names()[0]
    (lib / (name + ".py")).write_text(VENDOR_RECORDING)
    marker, record = tmp_path / "stray-imports", tmp_path / "record.json"
    strays = []
    for folder in ("cwd", "pythonpath"):
        stray = tmp_path / folder
        stray.mkdir()
        for shadow in (name, "json", "argparse"):
            (stray / (shadow + ".py")).write_text(STRAY % str(marker))
        strays.append(str(stray))
    monkeypatch.chdir(strays[0])
    monkeypatch.setenv("PYTHONPATH", strays[1])
    monkeypatch.setenv("RECORD_WORKER_PATH", str(record))

    settings = WorkerSettings(module="auto", module_paths=(), root=str(root), python=sys.executable,
                              timezone=Timezone(), timeout=30.0, memory_limit=0)
    worker = WorkerClient(settings)
    try:
        worker.check_api()
        assert worker.module_info["file"] == str(lib / (name + ".py"))
    finally:
        worker.close()

    assert not marker.exists(), marker.read_text()
    seen = json.loads(record.read_text())
    folders = module.default_module_paths(str(root))
    assert seen["path"][-len(folders):] == folders, "the module's folders come last"
    stdlib = seen["path"][:-len(folders)]
    assert stdlib and os.path.dirname(os.path.dirname(seen["json"])) in stdlib, "json is the standard library's"
    for entry in stdlib:
        assert os.path.isabs(entry) and "site-packages" not in entry and "dist-packages" not in entry, entry
        assert not entry.startswith((REPO, str(tmp_path))), entry
