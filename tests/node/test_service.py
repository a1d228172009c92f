"""Service lifecycle: supervised tasks, daemon-task exit, child services, bounded closing."""

import asyncio

import pytest

from node.service import DaemonTaskExit, Service, close_bounded, run_service, sleep_forever


class Recorder(Service):
    def __init__(self, name: str, log: list[str], *, children: tuple[Service, ...] = ()) -> None:
        super().__init__()
        self.name = name
        self.log = log
        self.children = children

    async def run(self) -> None:
        for child in self.children:
            self.manager.run_child_service(child)
        self.log.append(f"{self.name} up")
        try:
            await sleep_forever()
        finally:
            self.log.append(f"{self.name} down")


class Crashing(Service):
    name = "crashing"

    async def run(self) -> None:
        async def boom() -> None:
            await asyncio.sleep(0.01)
            raise RuntimeError("task failed")

        self.manager.run_task("boom", boom())
        await sleep_forever()


async def test_crashing_task_fails_parent_and_cancels_siblings() -> None:
    log: list[str] = []
    sibling = Recorder("sibling", log)
    root = Recorder("root", log, children=(sibling, Crashing()))
    with pytest.raises(BaseExceptionGroup) as err:
        await asyncio.wait_for(run_service(root), 2)
    assert err.group_contains(RuntimeError, match="task failed")
    assert "sibling down" in log and "root down" in log


async def test_returning_daemon_task_is_a_failure() -> None:
    class Daemonic(Service):
        name = "d"

        async def run(self) -> None:
            async def quits() -> None:
                await asyncio.sleep(0)

            self.manager.run_daemon_task("quits", quits)
            await sleep_forever()

    with pytest.raises(BaseExceptionGroup) as err:
        await asyncio.wait_for(run_service(Daemonic()), 2)
    assert err.group_contains(DaemonTaskExit, match="d/quits")


async def test_tasks_are_named_service_slash_job() -> None:
    seen: list[str] = []

    class Named(Service):
        name = "miner"

        async def run(self) -> None:
            async def job() -> None:
                task = asyncio.current_task()
                assert task is not None
                seen.append(task.get_name())

            await self.manager.run_task("compute", job())

    await run_service(Named())
    assert seen == ["miner/compute"]


async def test_cancel_stops_children_innermost_first() -> None:
    log: list[str] = []
    leaf = Recorder("leaf", log)
    mid = Recorder("mid", log, children=(leaf,))
    root = Recorder("root", log, children=(mid,))
    task = asyncio.create_task(run_service(root))
    await asyncio.sleep(0.05)
    assert {"root up", "mid up", "leaf up"} <= set(log)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    downs = [e for e in log if e.endswith("down")]
    assert downs == ["leaf down", "mid down", "root down"]


async def test_manager_only_while_running() -> None:
    svc = Recorder("x", [])
    with pytest.raises(RuntimeError, match="not running"):
        _ = svc.manager


async def test_close_bounded_gives_up_after_timeout() -> None:
    async def hangs() -> None:
        await asyncio.sleep(10)

    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await close_bounded("hang", hangs, 0.1) is False
    assert loop.time() - start < 1


async def test_close_bounded_reports_failure_and_success() -> None:
    async def fails() -> None:
        raise OSError("disk gone")

    async def works() -> None:
        await asyncio.sleep(0)

    assert await close_bounded("fails", fails, 1) is False
    assert await close_bounded("works", works, 1) is True


async def test_close_bounded_finishes_despite_cancellation() -> None:
    closed = asyncio.Event()

    async def slow_close() -> None:
        await asyncio.sleep(0.1)
        closed.set()

    async def owner() -> None:
        try:
            await sleep_forever()
        finally:
            await close_bounded("slow", slow_close, 2)

    task = asyncio.create_task(owner())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.01)
    task.cancel()  # a second cancellation must not abandon the close
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed.is_set()
