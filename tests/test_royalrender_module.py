"""Finding the vendor module: names per Python version, module_path, RR_ROOT and relink_lx.cfg."""

import sys

import pytest

from exporter.royalrender.vendor import module

pytestmark = pytest.mark.inprocess

VENDOR_LIKE = '''
"""A module named like the vendor's, standing in for it in this test."""
import exporter.simulation.standin as _standin
globals().update({k: v for k, v in vars(_standin).items() if not k.startswith("__")})
'''


def test_candidate_names_follow_the_vendor_scheme():
    assert module.candidate_names((3, 11)) == ["libpyRR311_datafiles", "libpyRR311", "libpyRR2_datafiles",
                                               "libpyRR2"]
    assert module.candidate_names((3, 9))[0] == "libpyRR39_datafiles"


def test_auto_imports_from_module_path(tmp_path):
    name = module.candidate_names()[1]  # libpyRR<maj><min> without _datafiles: the second choice
    (tmp_path / (name + ".py")).write_text(VENDOR_LIKE)
    try:
        loaded = module.load(module.AUTO, [str(tmp_path)])
        assert loaded.__name__ == name and hasattr(loaded, "_rrGlobalStatsLS")
    finally:
        sys.modules.pop(name, None)
        sys.path.remove(str(tmp_path))


def test_error_lists_names_folders_and_supported_versions(tmp_path):
    folder = str(tmp_path / "bin" / "lx64" / "lib")
    try:
        module.load(module.AUTO, [folder])
    except module.ModuleLoadError as exc:
        message = str(exc)
    else:
        raise AssertionError("no vendor module exists here, loading must fail")
    for name in module.candidate_names():
        assert name in message
    assert folder in message and "3.9, 3.10, 3.11, 3.13" in message


def test_root_from_environment_and_relink(tmp_path, monkeypatch):
    root = tmp_path / "rr"
    (root / "sub" / "cfg_global").mkdir(parents=True)
    monkeypatch.setenv("RR_ROOT", str(root))
    assert module.resolve_root(None) == str(root)
    (root / "sub" / "cfg_global" / "relink_lx.cfg").write_text("# relink\nRoot=/mnt/real-rr\n")
    assert module.resolve_root(None) == "/mnt/real-rr"
    assert module.resolve_root(str(tmp_path / "configured")) == str(tmp_path / "configured")
    paths = module.default_module_paths("/mnt/rr", (3, 11))
    assert paths[:2] == ["/mnt/rr/bin/lx64/lib", "/mnt/rr/bin/lx64/lib/python/3.11"]


def test_daemon_reports_a_missing_module_and_keeps_running(tmp_path, start_daemon, write_config):
    (tmp_path / "sub" / "stats").mkdir(parents=True)
    (tmp_path / "sub" / "stats" / "server_stats.db").write_text("x")
    config = write_config("royalrender:\n  root: '%s'\n  module: auto\n" % tmp_path)
    daemon = start_daemon("--config", config)
    samples = daemon.samples()
    path = str(tmp_path / "sub" / "stats" / "server_stats.db")
    assert samples[("renderfarm_exporter_source_up",
                    frozenset({("kind", "royalrender_server_stats"), ("path", path)}))] == 0
    assert "cannot import Royal Render's Python module" in daemon.log()
