"""Run blocking work (a dataset build, a model load) in a daemon thread from asyncio.

Unlike `asyncio.to_thread`, the thread is not in the loop's default executor, which the loop
joins on close: a node asked to stop while such work runs stops within its bound, and the
abandoned thread dies with the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")


async def in_daemon_thread(fn: Callable[..., T], *args: Any, name: str = "blocking") -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def work() -> None:
        ok, value = True, cast(Any, None)
        try:
            value = fn(*args)
        except BaseException as exc:  # handed to the awaiting task, re-raised there
            ok, value = False, exc
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
                loop.call_soon_threadsafe(settle, ok, value)

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future
