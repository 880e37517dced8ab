"""Process-level settings that make CPU rendering faster: the C allocator.

Why: eager PyTorch frees and re-allocates THA3's big activations every frame (a 512x512 map of
64 channels is 64 MiB). glibc serves allocations above its mmap threshold (at most 32 MiB) with
fresh ``mmap`` pages and unmaps them on free, so every frame page-faults and zeroes ~1.2 GB again:
measured on the 2-core test VM, ~300 000 page faults and 0.7 cores of kernel time per frame.
Keeping freed memory in the heap (no mmap, no trimming) removes that: the same frame then makes
~0 page faults, and the PyTorch backend went from 1506 to 904 ms at the same peak RSS.

The setting is process-wide, so it also speeds up anything else in the process (the reference
poser in ``thacam bench`` included: the bench reports the reference both with and without it).
It cannot be undone cleanly (glibc's dynamic mmap threshold stays off once set), so the bench
measures the reference "as shipped" before it tunes. glibc only; elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
import resource
import sys

__all__ = ["tune_allocator", "allocator_tuned", "page_faults"]

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_tuned = False


def _libc():
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune_allocator() -> bool:
    """Keep freed memory in the heap for reuse (glibc); True when it took effect."""
    global _tuned
    libc = _libc()
    if libc is None:
        log.debug("allocator tuning skipped: not glibc")
        return False
    ok = (libc.mallopt(_M_MMAP_MAX, 0) == 1                    # big blocks from the heap, too
          and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1      # never hand the heap back
          and libc.mallopt(_M_TOP_PAD, 64 << 20) == 1            # grow it in big steps
          # threads share the main heap: a thread's own arena falls back to mmap for big
          # blocks whatever M_MMAP_MAX says, and the live pipeline renders on a thread
          and libc.mallopt(_M_ARENA_MAX, 1) == 1)
    _tuned = ok
    if not ok:
        log.debug("allocator tuning: mallopt refused a setting")
    return ok


def allocator_tuned() -> bool:
    return _tuned


def page_faults() -> int:
    """Minor page faults of this process so far (the cost the tuning removes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
