"""One Service lifecycle over asyncio.TaskGroup: named tasks, daemon tasks, child services.

A service's `run()` is its body. Tasks it starts through its manager are supervised: one that
raises fails the service (and so its parents), and a *daemon* task that returns is a failure too,
because it was meant to live as long as the service. Cancellation flows innermost-first through
the task groups; resources are released in `finally` blocks with `close_bounded`, which survives
a second cancellation and gives up after a timeout with a warning.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class DaemonTaskExit(Exception):
    """A daemon task returned although it should run for the life of its service."""


class Service(ABC):
    """A unit of the node with a body (`run`) and supervised background tasks."""

    name: str = "service"

    def __init__(self) -> None:
        self._manager: Manager | None = None

    @property
    def manager(self) -> Manager:
        if self._manager is None:
            raise RuntimeError(f"service {self.name!r} is not running")
        return self._manager

    @abstractmethod
    async def run(self) -> None:
        """The service's body; it ends when this returns and its non-daemon tasks finish."""


class Manager:
    """Starts a running service's tasks on its TaskGroup under `service/job` names."""

    def __init__(self, service: Service, group: asyncio.TaskGroup) -> None:
        self._service = service
        self._group = group
        self.tasks: list[asyncio.Task[None]] = []

    def _name(self, job: str) -> str:
        return f"{self._service.name}/{job}"

    def run_task(self, job: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._group.create_task(coro, name=self._name(job))
        self.tasks.append(task)
        return task

    def run_daemon_task(self, job: str, fn: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        name = self._name(job)

        async def daemon() -> None:
            await fn()
            raise DaemonTaskExit(f"daemon task {name} returned")

        return self.run_task(job, daemon())

    def run_child_service(self, child: Service) -> asyncio.Task[None]:
        return self.run_task(child.name, run_service(child))


async def run_service(service: Service) -> None:
    """Run `service` to completion; any failure of its body or tasks propagates.

    On cancellation the service's tasks and child services are stopped first, then its body, so
    a body's `finally` can close what its children were still using.
    """
    async with asyncio.TaskGroup() as group:
        manager = service._manager = Manager(service, group)
        body = asyncio.create_task(service.run(), name=f"{service.name}/run")
        try:
            await asyncio.wait({body})
        except asyncio.CancelledError:
            for task in manager.tasks:
                task.cancel()
            if manager.tasks:
                await asyncio.wait(manager.tasks)
            body.cancel()
            await asyncio.wait({body})
            if not body.cancelled() and body.exception() is not None:
                raise body.exception() from None  # type: ignore[misc]
            raise
        finally:
            service._manager = None
        body.result()


async def close_bounded(what: str, close: Callable[[], Awaitable[None]], timeout: float) -> bool:
    """Await `close()` for at most `timeout` s even if cancelled meanwhile; True if it finished."""
    task = asyncio.ensure_future(close())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    cancelled = False
    while not task.done() and (remaining := deadline - loop.time()) > 0:
        try:
            await asyncio.wait({task}, timeout=remaining)
        except asyncio.CancelledError:
            cancelled = True
    ok = task.done() and not task.cancelled() and task.exception() is None
    if not task.done():
        task.cancel()
        log.warning("closing %s took over %.1fs; abandoned", what, timeout)
    elif not ok:
        log.warning("closing %s failed: %r", what, task.exception())
    if cancelled:
        raise asyncio.CancelledError
    return ok


async def sleep_forever() -> None:
    await asyncio.Event().wait()
