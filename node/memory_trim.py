"""Handing freed heap memory back to the operating system at intervals (glibc's malloc_trim).

Audit replays, merges and evaluations run torch on short-lived threads, each with its own malloc
arena, and checkpoints and activations pass through as multi-megabyte bytes objects. glibc keeps
what they free inside its arenas, so a long-running node's resident memory creeps up with
fragmentation although its live heap does not grow. `malloc_trim(0)` releases the free pages of
every arena; elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_INTERVAL_S = 30.0


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_TRIM = _load_trim()


def trim_heap() -> bool:
    """Releases free heap pages to the system now; True when memory was returned."""
    return bool(_TRIM(0)) if _TRIM is not None else False


async def trim_forever(interval_s: float = TRIM_INTERVAL_S) -> None:
    """Trims the heap every `interval_s` seconds for the life of the node."""
    if _TRIM is None:
        log.info("malloc_trim is not available here; the heap is not trimmed")
    while True:
        await asyncio.sleep(interval_s)
        if _TRIM is not None:
            await asyncio.to_thread(trim_heap)
