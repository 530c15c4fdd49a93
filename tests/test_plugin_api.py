"""Plugins need nothing but ``exporter.plugin``: every plugin under tests/plugins/ imports only that module of the
exporter, and only names it offers (docs/plugins.md)."""

import ast
import os

import pytest
from conftest import REPO

import exporter.plugin

pytestmark = pytest.mark.inprocess

PLUGINS = os.path.join(REPO, "tests", "plugins")
PUBLIC = "exporter.plugin"


def plugin_files():
    """The plugins' own sources (not the copies pip leaves in ``build/`` when it installs one)."""
    found = []
    for folder, folders, names in os.walk(PLUGINS):
        folders[:] = [name for name in folders if name != "build" and not name.endswith(".egg-info")]
        found.extend(os.path.join(folder, name) for name in names if name.endswith(".py"))
    return sorted(found)


def exporter_imports(path):
    """(module, name) for every import of an ``exporter`` module in ``path``; name None for ``import module``."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names if alias.name.split(".")[0] == "exporter")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "exporter":
            yield from ((node.module, alias.name) for alias in node.names)


def test_there_are_plugins_of_both_shapes():
    names = {os.path.basename(os.path.dirname(path)) for path in plugin_files()}
    assert {"thirdfarm", "tailfarm"} <= names


@pytest.mark.parametrize("path", plugin_files(), ids=lambda path: os.path.relpath(path, PLUGINS))
def test_a_plugin_imports_only_the_public_api(path):
    imported = list(exporter_imports(path))
    assert imported, "a plugin that imports nothing of the exporter tests nothing here"
    assert [module for module, _ in imported if module != PUBLIC] == []
    assert [name for _, name in imported if name not in exporter.plugin.__all__] == []


def test_the_public_api_offers_what_it_lists():
    assert sorted(exporter.plugin.__all__) == sorted(set(exporter.plugin.__all__))
    assert [name for name in exporter.plugin.__all__ if not hasattr(exporter.plugin, name)] == []


def test_the_check_finds_a_private_import(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("import exporter.tailer\nfrom exporter.plugin import Tailer\nfrom exporter import budget\n")
    assert list(exporter_imports(str(sneaky))) == [("exporter.tailer", None), ("exporter.plugin", "Tailer"),
                                                   ("exporter", "budget")]
