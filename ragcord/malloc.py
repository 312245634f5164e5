"""glibc's allocator set to give memory back: what keeps a crawling process near its working size.

Measured (bench/footprint.py, and four threads embedding in one process): with glibc's defaults, every
thread that allocates gets an arena of its own, and freed blocks under the (growing, up to 32 MB) mmap
threshold stay in those arenas: 1.15 GB anonymous at the peak, 660 MB kept after the work. With big blocks
always mmapped (freed at once) and two arenas: 408 MB at the peak, 99 MB after, at the same speed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept fixed instead of growing
ARENA_MAX = 2

# What child processes read at start (the workers: Dramatiq's processes are started with this environment).
ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_ARENA_MAX": str(ARENA_MAX)}

_M_MMAP_THRESHOLD = -3  # mallopt's parameter numbers, from glibc's malloc.h
_M_ARENA_MAX = -8


def give_memory_back() -> bool:
    """In this process, from now on: big blocks mmapped (returned when freed), at most two arenas.

    A no-op (False) where the C library is not glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_ARENA_MAX, ARENA_MAX))
    if not ok:
        log.debug("mallopt refused the memory settings")
    return ok


def trim() -> bool:
    """Give the free memory at the top of the heap and in free pages back to the system now (glibc's
    malloc_trim); False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        malloc_trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return False
    return bool(malloc_trim(0))
