"""A stranger's cases against containment's fast path (a known folder checked by identity, not realpath)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from exporter import containment
from exporter.containment import Containment, OutsideRoots
from exporter.paths import PathPattern

#: In process, but racing a second process for seconds: too slow for --fast.
pytestmark = pytest.mark.daemon

#: Flips two names atomically (renameat2 RENAME_EXCHANGE) until killed: the folder and a symlink to outside.
SWAPPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = (p.encode() for p in sys.argv[1:3])
print("ready", flush=True)
while True:
    if libc.renameat2(-100, a, -100, b, 2) != 0:
        raise SystemExit("renameat2: %s" % os.strerror(ctypes.get_errno()))
"""


def test_a_folder_flipped_with_a_symlink_out_during_the_check_never_lets_an_outside_file_through(tmp_path):
    """The fast path's lstat of the file, stat of its folder and the later open each resolve the folder anew: a
    folder flipped to a symlink out at the lstat, back at the stat and out again at the open handed over the
    outside file's identity as checked, and the descriptor check, comparing only identities, let it through."""
    root, outside = tmp_path / "farm", tmp_path / "home"
    (root / "logs").mkdir(parents=True)
    outside.mkdir()
    (root / "logs" / "cpu.acct").write_text("inside\n")
    (outside / "cpu.acct").write_text("secret\n")
    secret = os.stat(outside / "cpu.acct")
    os.symlink(outside, root / "flip")
    rule = Containment([PathPattern(str(root / "*" / "cpu.acct"))])
    path = str(root / "logs" / "cpu.acct")
    rule.check(path)  # the folder is known from here on: later checks take the fast path
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(root / "logs"), str(root / "flip")],
                               stdout=subprocess.PIPE, text=True)
    leaked = refused = 0
    try:
        assert swapper.stdout is not None and swapper.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline and not leaked:
            try:
                checked = rule.check(path)
                fd = os.open(path, os.O_RDONLY)
            except OutsideRoots:
                refused += 1
                continue
            except OSError:  # the flip caught realpath or the open mid-way: not read either
                continue
            try:
                opened = os.fstat(fd)
                rule.check_descriptor(fd, path, opened, checked)
                leaked += os.path.samestat(opened, secret)
            except OutsideRoots:
                refused += 1
            finally:
                os.close(fd)
    finally:
        swapper.kill()
        swapper.wait()
    assert swapper.returncode is not None
    assert refused > 0, "the flip never raced the reads: the test did not exercise anything"
    assert leaked == 0, "an outside file passed both checks %d time(s)" % leaked


def read_through(rule, path):
    """What a reader does with a path: check, open, check the descriptor; the text if every check passes."""
    checked = rule.check(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        rule.check_descriptor(fd, path, os.fstat(fd), checked)
        return os.read(fd, 100).decode()
    finally:
        os.close(fd)


def known_farm(tmp_path):
    """A farm whose folder farm/a/logs is known to the rule (read once), and a home outside with a secret."""
    root, home = tmp_path / "farm", tmp_path / "home"
    (root / "a" / "logs").mkdir(parents=True)
    (home / "a" / "logs").mkdir(parents=True)
    (root / "a" / "logs" / "cpu.acct").write_text("inside\n")
    (home / "a" / "logs" / "cpu.acct").write_text("secret\n")
    (home / "secret").write_text("secret\n")
    rule = Containment([PathPattern(str(root / "*" / "logs" / "cpu.acct"))])
    path = str(root / "a" / "logs" / "cpu.acct")
    assert read_through(rule, path) == "inside\n"
    return root, home, rule, path


def refused(rule, path):
    try:
        read_through(rule, path)
    except OutsideRoots:
        return True
    return False


def test_a_known_folder_replaced_by_a_symlink_out_is_refused(tmp_path):
    root, home, rule, path = known_farm(tmp_path)
    os.rename(root / "a" / "logs", root / "a" / "old")
    os.symlink(home / "a" / "logs", root / "a" / "logs")
    assert refused(rule, path)


def test_an_intermediate_folder_of_a_known_one_replaced_by_a_symlink_out_is_refused(tmp_path):
    root, home, rule, path = known_farm(tmp_path)
    os.rename(root / "a", root / "old")
    os.symlink(home / "a", root / "a")
    assert refused(rule, path)


def test_a_file_read_once_then_replaced_by_a_symlink_out_is_refused(tmp_path):
    root, home, rule, path = known_farm(tmp_path)
    os.unlink(path)
    os.symlink(home / "secret", path)
    assert refused(rule, path)


def test_a_known_folder_deleted_recreated_then_swapped_out_is_refused_and_the_new_one_read(tmp_path):
    root, home, rule, path = known_farm(tmp_path)
    os.unlink(path)
    os.rmdir(root / "a" / "logs")
    (root / "a" / "logs").mkdir()
    (root / "a" / "logs" / "cpu.acct").write_text("again\n")
    assert read_through(rule, path) == "again\n"  # a new inode: the slow path, then known again
    os.rename(root / "a" / "logs", root / "a" / "old")
    os.symlink(home / "a" / "logs", root / "a" / "logs")
    assert refused(rule, path)


def test_past_the_memo_bound_folders_are_forgotten_and_still_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(containment, "MAX_KNOWN_FOLDERS", 2)
    root, home, rule, path = known_farm(tmp_path)
    for name in ("b", "c", "d"):
        (root / name / "logs").mkdir(parents=True)
        (root / name / "logs" / "cpu.acct").write_text(name + "\n")
        assert read_through(rule, str(root / name / "logs" / "cpu.acct")) == name + "\n"
    assert len(rule._folders) <= 2
    os.rename(root / "d" / "logs", root / "d" / "old")
    os.symlink(home / "a" / "logs", root / "d" / "logs")
    assert refused(rule, str(root / "d" / "logs" / "cpu.acct"))
