"""A stranger's cases against containment's fast path (a known folder checked by identity, not realpath)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from exporter.containment import Containment, OutsideRoots
from exporter.paths import PathPattern

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
