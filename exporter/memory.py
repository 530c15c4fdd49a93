"""Gives freed heap memory back to the operating system after renders.

A render builds and drops tens of megabytes of small objects (metric
families, lines, joined bodies). CPython returns its own arenas, but glibc
keeps the freed space of its heap and per-thread arenas mapped, so the
resident size only ever grows by the size of the largest render. Asking
glibc to trim (``malloc_trim``) after each batch of renders keeps the resident size near what is actually in use. A trim costs well
under a millisecond (it releases whole free pages only). Elsewhere than
glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Callable, Optional



def _malloc_trim() -> Optional[Callable[[int], int]]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    if _TRIM is not None:
        _TRIM(0)
