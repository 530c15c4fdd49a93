"""Packages that stand alone: python -m build, the wheel in a fresh venv, the sdist's own tests.

Uses the real ``build`` front end (an isolated build environment from the
package registry), real virtual environments and the real pip.
"""

import os
import re
import subprocess
import sys
import tarfile
import urllib.request

import pytest
from conftest import REPO, free_port, wait_until

pytestmark = pytest.mark.daemon

#: a few test files that need conftest.py, the package and its data: proof the sdist's tests run
SDIST_TESTS = ("tests/test_records.py", "tests/test_royalrender_kinds.py", "tests/test_config_warnings.py")


def run(*command, cwd=None, timeout=600):
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    built = run(sys.executable, "-m", "build", "--outdir", str(out), REPO)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    sdists = [name for name in os.listdir(out) if name.endswith(".tar.gz")]
    wheels = [name for name in os.listdir(out) if name.endswith(".whl")]
    assert len(sdists) == len(wheels) == 1, os.listdir(out)
    return {"log": built.stdout + built.stderr, "sdist": str(out / sdists[0]), "wheel": str(out / wheels[0])}


def venv(path):
    assert run(sys.executable, "-m", "venv", str(path)).returncode == 0
    return str(path / "bin" / "python")


def test_build_has_no_warnings(dist):
    # pip's notes about this machine's package index and setuptools' note that Python runs with
    # PYTHONDONTWRITEBYTECODE are about the environment, not the package
    benign = ("Location 'file:", "byte-compiling is disabled")
    problems = [line for line in dist["log"].splitlines() if re.search(r"deprecat|no files found|^warning", line, re.I)
                and not any(note in line for note in benign)]
    assert problems == []
    assert "License-Expression: Apache-2.0" in run("tar", "xzOf", dist["sdist"], "--wildcards", "*/PKG-INFO").stdout


def test_wheel_installs_in_a_fresh_venv_and_serves_the_demo(dist, tmp_path):
    python = venv(tmp_path / "venv")
    installed = run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", dist["wheel"])
    assert installed.returncode == 0, installed.stderr[-3000:]
    port = free_port()
    command = [str(tmp_path / "venv" / "bin" / "renderfarm-exporter"), "--demo", "--web.listen-address",
               "127.0.0.1:%d" % port]
    daemon = subprocess.Popen(command, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def serves():
            assert daemon.poll() is None, "the installed exporter exited"
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=2) as response:
                    return b"rush_frames_total{" in response.read()
            except OSError:
                return False

        wait_until(serves, 30, "the wheel's exporter to serve the demo farm")
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def test_sdist_carries_and_passes_its_own_tests(dist, tmp_path):
    with tarfile.open(dist["sdist"]) as archive:
        archive.extractall(tmp_path)
    (source,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    for needed in ("tests/conftest.py", "tests/fake_rr_module.py", "bench/__main__.py", "fuzz/__main__.py",
                   "scripts/test", "scripts/install", "config/renderfarm-exporter.yml", "LICENSE", ".ci/run"):
        assert (source / needed).is_file(), needed
    python = venv(tmp_path / "venv")
    installed = run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "%s[test]" % source)
    assert installed.returncode == 0, installed.stderr[-3000:]
    tested = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SDIST_TESTS, cwd=str(source))
    assert tested.returncode == 0, tested.stdout[-3000:]
    assert re.search(r"^\d+ passed", tested.stdout.splitlines()[-1]), tested.stdout[-500:]
