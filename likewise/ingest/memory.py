"""Allocator settings for the event worker, whose passes allocate and free hundreds of
megabytes each.

By default freed memory goes back to the kernel soon (Arrow's mimalloc pool within about 10 ms,
glibc's large blocks at once) and comes back, at the next pass, as fresh pages the kernel must
zero: measured, a tenth of the worker's CPU went to clearing pages. Kept for a few seconds
instead, it is reused (a third as much clearing): Arrow allocates from its jemalloc pool with a
10-second decay, and glibc keeps freed heap memory up to a bound instead of trimming it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

DECAY_MS = 10_000  # how long jemalloc keeps freed pages (a pass comes at least every second)
KEEP_BYTES = 512 << 20  # freed glibc heap memory kept rather than trimmed
MMAP_BYTES = 32 << 20  # glibc's largest threshold: smaller blocks come from the reused heap
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def worker_environment() -> None:
    """Before the worker is spawned: its Arrow allocates from jemalloc. Arrow reads this when
    it starts, and the spawned process imports it before its first line runs; the variable
    is inherited. An operator's own choice is kept."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")


def keep_freed_memory() -> None:
    """In the worker, at start: keep freed memory for reuse (see the module's docstring)."""
    import pyarrow as pa

    try:
        if pa.default_memory_pool().backend_name == "jemalloc":
            pa.jemalloc_set_decay_ms(DECAY_MS)
    except NotImplementedError:  # a pyarrow built without jemalloc: its default pool stays
        log.info("pyarrow has no jemalloc pool; freed memory is returned at its default pace")
    name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    if mallopt is not None:  # glibc's; other C libraries may not have it
        mallopt(_M_MMAP_THRESHOLD, MMAP_BYTES)
        mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES)
