"""The test tiers of tests/conftest.py: one per test, none escaped, and no program a tier does not allow."""

import subprocess
import sys

import pytest
from conftest import GUARD, TIERS, pytest_collection_modifyitems

pytestmark = pytest.mark.inprocess

MODULE = """
import pytest

pytestmark = pytest.mark.inprocess

def test_of_the_module_tier():
    pass

@pytest.mark.ecosystem
def test_marked_higher():
    pass

def test_with_the_daemon(start_daemon):
    pass

@pytest.mark.needs_root
def test_as_root():
    pass
"""


def tiers_given(items):
    return {item.name: [mark.name for mark in item.iter_markers() if mark.name in TIERS] for item in items}


def test_each_test_gets_exactly_one_tier_and_one_without_fails_the_collection_by_name(pytester):
    pytester.makepyfile(test_tiered=MODULE, test_untiered="def test_forgotten():\n    pass\n")
    items, _ = pytester.inline_genitems()
    with pytest.raises(pytest.UsageError, match="tests without a tier.*\n  test_untiered.py::test_forgotten$"):
        pytest_collection_modifyitems(items[0].session, items)
    tiered = [item for item in items if item.name != "test_forgotten"]
    pytest_collection_modifyitems(items[0].session, tiered)
    assert tiers_given(tiered) == {"test_of_the_module_tier": ["inprocess"], "test_marked_higher": ["ecosystem"],
                                   "test_with_the_daemon": ["daemon"], "test_as_root": ["ecosystem"]}


@pytest.mark.parametrize("command, needed", [
    ([sys.executable, "-m", "exporter", "--version"], "daemon"),
    (["promtool", "--version"], "ecosystem"),
    ("mount -t tmpfs none /mnt", "ecosystem"),
])
def test_an_in_process_test_cannot_start_the_exporter_or_a_system_tool(command, needed):
    try:
        with pytest.raises(RuntimeError, match="needs the %s tier" % needed):
            subprocess.run(command, shell=isinstance(command, str), capture_output=True, timeout=30)
        assert len(GUARD.seen) == 1, "also said when the code under test catches the error"
    finally:
        GUARD.seen.clear()  # this test's own refusals are its input, not a failure


def test_an_in_process_test_may_start_other_programs_as_the_readers_do():
    assert subprocess.run([sys.executable, "-c", "pass"], timeout=30).returncode == 0  # as the RR worker starts
