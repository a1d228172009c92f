"""The compute worker: one thread running the miner's jobs in order, fed by a bounded queue.

Handlers on the event loop only validate and `submit`; the engine is touched by this one thread
alone, so the loop stays responsive and the order of engine calls is the order of submission,
which is what an auditor replays. A job that raises fails its own future, never the worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from node.service import Service
from training.determinism import set_determinism

log = logging.getLogger(__name__)
T = TypeVar("T")
_Job = tuple[Callable[[], Any], "asyncio.Future[Any]"]


class ComputeWorker(Service):
    name = "compute"

    def __init__(self, *, threads: int = 0, max_queue: int = 64) -> None:
        super().__init__()
        self._threads = threads
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max_queue)
        self._executor: ThreadPoolExecutor | None = None
        self._busy = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.seconds = 0.0
        """Wall seconds the thread spent in jobs."""
        self.jobs = 0
        self.first_job_at: float | None = None
        """`time.perf_counter()` when the first job started."""
        self.last_job_end = 0.0
        """`time.perf_counter()` when the latest job ended."""

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def busy(self) -> bool:
        return self._busy or not self._queue.empty()

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue `fn` for the compute thread; raises asyncio.QueueFull when the queue is full."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((fn, future))
        self._idle.clear()
        return future

    async def idle(self) -> None:
        """Returns once every job submitted so far has run."""
        while self.busy:
            self._idle.clear()
            await self._idle.wait()

    def _init_thread(self) -> None:
        set_determinism(threads=self._threads or None)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        executor = self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="tessera-compute", initializer=self._init_thread
        )
        try:
            while True:
                if self._queue.empty():
                    self._idle.set()
                fn, future = await self._queue.get()
                if future.done():  # cancelled by its submitter
                    continue
                self._busy = True
                if self.first_job_at is None:
                    self.first_job_at = time.perf_counter()
                try:
                    result = await loop.run_in_executor(executor, _timed, fn)
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                else:
                    value, seconds = result
                    self.seconds += seconds
                    self.jobs += 1
                    if not future.done():
                        future.set_result(value)
                finally:
                    self._busy = False
                    self.last_job_end = time.perf_counter()
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            while not self._queue.empty():
                _, future = self._queue.get_nowait()
                future.cancel()
            self._idle.set()


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started
