"""One run of a request's work whose outcome duplicates of the request share.

The first request creates a future and runs the work through `run_shared`; a duplicate that
arrives meanwhile awaits (a shield of) the same future instead of running the work again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def run_shared(future: asyncio.Future[T], work: Awaitable[T]) -> T:
    """Await `work` and settle `future` with its outcome (cancelled if the work is)."""
    try:
        result = await work
    except asyncio.CancelledError:
        future.cancel()
        raise
    except Exception as exc:
        future.set_exception(exc)
        future.exception()  # retrieved: a concurrent duplicate may not be waiting
        raise
    future.set_result(result)
    return result
