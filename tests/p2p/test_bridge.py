"""The asyncio <-> trio portal: results, exceptions, cancellation both ways, start and stop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
import trio
import uvloop

from p2p.bridge import Portal, TrioThread
from p2p.errors import HostError

pytestmark = pytest.mark.timeout(30)


class Started:
    """A setup callback that records the nursery and portal it was given."""

    def __init__(self) -> None:
        self.portal: Portal | None = None
        self.nursery: trio.Nursery | None = None

    async def __call__(self, nursery: trio.Nursery, portal: Portal) -> None:
        self.nursery, self.portal = nursery, portal


@pytest.fixture
async def trio_thread() -> AsyncIterator[tuple[TrioThread, Started]]:
    thread, started = TrioThread(name="test-trio"), Started()
    await thread.start(started)
    yield thread, started
    await thread.stop(5.0)


async def test_run_in_trio_returns_result_computed_in_trio_thread(
    trio_thread: tuple[TrioThread, Started],
) -> None:
    thread, _ = trio_thread

    async def add(a: int, b: int) -> tuple[int, str]:
        await trio.lowlevel.checkpoint()
        trio.lowlevel.current_trio_token()  # raises outside trio
        return a + b, threading.current_thread().name

    assert await thread.run_in_trio(add, 2, 3) == (5, "test-trio")


async def test_many_concurrent_calls(trio_thread: tuple[TrioThread, Started]) -> None:
    thread, _ = trio_thread

    async def echo(i: int) -> int:
        await trio.sleep(0.001 * (i % 5))
        return i

    results = await asyncio.gather(*(thread.run_in_trio(echo, i) for i in range(200)))
    assert results == list(range(200))


async def test_exception_in_trio_propagates_to_asyncio(
    trio_thread: tuple[TrioThread, Started],
) -> None:
    thread, _ = trio_thread

    async def boom() -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("from trio")

    with pytest.raises(ValueError, match="from trio"):
        await thread.run_in_trio(boom)

    async def answer() -> int:
        return 7

    assert await thread.run_in_trio(answer) == 7  # the trio loop survived


async def test_cancelling_asyncio_waiter_cancels_trio_side(
    trio_thread: tuple[TrioThread, Started],
) -> None:
    thread, _ = trio_thread
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(thread.run_in_trio(forever), 0.1)
    assert await asyncio.to_thread(cancelled.wait, 2.0)


async def test_trio_calls_back_into_asyncio(trio_thread: tuple[TrioThread, Started]) -> None:
    thread, started = trio_thread
    loop = asyncio.get_running_loop()
    assert started.portal is not None
    portal = started.portal

    async def double(x: int) -> int:
        assert asyncio.get_running_loop() is loop
        await asyncio.sleep(0)
        return 2 * x

    async def handler(x: int) -> int:  # what a libp2p stream handler would do
        return await portal.run_in_asyncio(double, x) + 1

    assert await thread.run_in_trio(handler, 20) == 41


async def test_asyncio_exception_propagates_to_trio(
    trio_thread: tuple[TrioThread, Started],
) -> None:
    thread, started = trio_thread
    assert started.portal is not None
    portal = started.portal

    async def fail() -> None:
        raise KeyError("asyncio side")

    async def handler() -> str:
        try:
            await portal.run_in_asyncio(fail)
        except KeyError as exc:
            return f"caught {exc}"
        return "no error"

    assert await thread.run_in_trio(handler) == "caught 'asyncio side'"


async def test_trio_cancellation_cancels_asyncio_task(
    trio_thread: tuple[TrioThread, Started],
) -> None:
    thread, started = trio_thread
    assert started.portal is not None
    portal = started.portal
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def handler() -> bool:
        with trio.move_on_after(0.1) as scope:
            await portal.run_in_asyncio(slow)
        return scope.cancelled_caught

    assert await thread.run_in_trio(handler) is True
    await asyncio.wait_for(cancelled.wait(), 2.0)


async def test_stop_cancels_nursery_and_joins_thread() -> None:
    thread, started = TrioThread(name="test-stop"), Started()
    await thread.start(started)
    assert thread.thread is not None and thread.thread.is_alive()
    cancelled = threading.Event()

    async def background() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    assert started.nursery is not None
    nursery = started.nursery
    await thread.run_in_trio(_start_soon, nursery, background)
    pending = asyncio.ensure_future(thread.run_in_trio(trio.sleep_forever))
    await asyncio.sleep(0.05)
    await thread.stop(2.0)
    assert not thread.thread.is_alive()
    assert cancelled.is_set()
    with pytest.raises(HostError):  # the in-flight call is answered, not left hanging
        await asyncio.wait_for(pending, 1.0)
    with pytest.raises(HostError, match="not running"):
        await thread.run_in_trio(trio.sleep, 0)
    await thread.stop(1.0)  # idempotent


async def _start_soon(nursery: trio.Nursery, fn: object) -> None:
    nursery.start_soon(fn)  # type: ignore[arg-type]


async def test_stop_times_out_when_trio_side_ignores_cancellation() -> None:
    thread = TrioThread(name="test-stubborn")
    await thread.start(Started())

    async def stubborn() -> None:
        with trio.CancelScope(shield=True):
            await trio.sleep(1.0)

    call = asyncio.ensure_future(thread.run_in_trio(stubborn))
    await asyncio.sleep(0.05)
    with pytest.raises(HostError, match="did not stop within"):
        await thread.stop(0.2)
    await thread.stop(5.0)
    assert thread.thread is not None and not thread.thread.is_alive()
    await call  # the shielded call finished normally


async def test_setup_failure_is_raised_by_start_and_thread_ends() -> None:
    thread = TrioThread(name="test-fail")

    async def setup(nursery: trio.Nursery, portal: Portal) -> None:
        nursery.start_soon(trio.sleep_forever)
        raise OSError("cannot listen")

    with pytest.raises(OSError, match="cannot listen"):
        await thread.start(setup)
    assert thread.thread is not None and not thread.thread.is_alive()
    with pytest.raises(HostError):
        await thread.start(setup)  # a TrioThread is single-use


def test_works_on_uvloop() -> None:
    async def main() -> int:
        thread = TrioThread(name="test-uvloop")
        started = Started()
        await thread.start(started)
        assert started.portal is not None
        portal = started.portal

        async def inc(x: int) -> int:
            return x + 1

        async def trio_side() -> int:
            return await portal.run_in_asyncio(inc, 1)

        try:
            return await thread.run_in_trio(trio_side)
        finally:
            await thread.stop(5.0)

    assert uvloop.run(main()) == 2
