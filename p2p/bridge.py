"""Two-way portal between the asyncio loop and a trio loop running in its own daemon thread.

py-libp2p is trio-only, so it runs under ``trio.run`` in a dedicated thread. The only
cross-thread primitives used are ``TrioToken.run_sync_soon`` (asyncio -> trio) and
``loop.call_soon_threadsafe`` (trio -> asyncio); results travel back the same way as
``outcome`` objects. asyncio code must never await trio/libp2p coroutines directly: it calls
``TrioThread.run_in_trio``; trio code (libp2p handlers) calls ``Portal.run_in_asyncio``.
Cancelling the waiting side cancels the work on the other side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar, TypeVarTuple

import outcome
import trio

from p2p.errors import HostError

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
Setup = Callable[[trio.Nursery, "Portal"], Awaitable[None]]

log = logging.getLogger(__name__)


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[[*Ts], object], *args: *Ts) -> None:
    """Schedule `fn(*args)` on the asyncio loop from any thread; dropped if the loop is closed."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        log.debug("asyncio loop closed; dropping a result from the trio thread")


def _resolve(fut: asyncio.Future[T], result: outcome.Outcome[T]) -> None:
    if fut.done():
        return
    if isinstance(result, outcome.Value):
        fut.set_result(result.value)
    else:
        fut.set_exception(result.error)


class Portal:
    """Handed to trio code so it can run asyncio coroutines and await their results."""

    def __init__(self, loop: asyncio.AbstractEventLoop, token: trio.lowlevel.TrioToken) -> None:
        self._loop = loop
        self._token = token

    async def run_in_asyncio(self, fn: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
        """Run `fn(*args)` as an asyncio task; cancelling this trio call cancels the task."""
        done = trio.Event()
        box: list[outcome.Outcome[T]] = []
        tasks: list[asyncio.Future[T]] = []

        def deliver(result: outcome.Outcome[T]) -> None:  # trio thread
            box.append(result)
            done.set()

        def on_done(task: asyncio.Future[T]) -> None:  # asyncio thread
            if task.cancelled():
                result: outcome.Outcome[T] = outcome.Error(HostError("asyncio task was cancelled"))
            elif (exc := task.exception()) is not None:
                result = outcome.Error(exc)
            else:
                result = outcome.Value(task.result())
            self._to_trio(deliver, result)

        def start() -> None:  # asyncio thread
            try:
                task = asyncio.ensure_future(fn(*args), loop=self._loop)
            except Exception as exc:
                self._to_trio(deliver, outcome.Error(exc))
                return
            tasks.append(task)
            task.add_done_callback(on_done)

        def cancel() -> None:  # asyncio thread
            for task in tasks:
                task.cancel()

        try:
            self._loop.call_soon_threadsafe(start)
        except RuntimeError:
            raise HostError("the asyncio loop is closed") from None
        try:
            await done.wait()
        finally:
            if not done.is_set():
                _post(self._loop, cancel)
        return box[0].unwrap()

    def _to_trio(self, fn: Callable[[*Ts], object], *args: *Ts) -> None:
        try:
            self._token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            log.debug("trio loop finished; dropping a result from asyncio")


class _TrioCall(Generic[T]):
    """One asyncio -> trio call: spawned into the nursery, cancellable from asyncio."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fut: asyncio.Future[T],
        job: Callable[[], Awaitable[T]],
    ) -> None:
        self._loop, self._fut, self._job = loop, fut, job
        self._scope: trio.CancelScope | None = None
        self._cancelled = False

    def spawn(self, nursery: trio.Nursery) -> None:  # trio thread, via run_sync_soon
        try:
            nursery.start_soon(self._run)
        except RuntimeError:
            _post(
                self._loop, _resolve, self._fut, outcome.Error(HostError("trio loop is stopping"))
            )

    def cancel(self) -> None:  # trio thread, via run_sync_soon
        self._cancelled = True
        if self._scope is not None:
            self._scope.cancel()

    async def _run(self) -> None:
        result: outcome.Outcome[T] = outcome.Error(HostError("trio loop stopped during the call"))
        try:
            with trio.CancelScope() as self._scope:
                if self._cancelled:
                    self._scope.cancel()
                try:
                    result = outcome.Value(await self._job())
                except Exception as exc:
                    result = outcome.Error(exc)
        finally:
            _post(self._loop, _resolve, self._fut, result)


class TrioThread:
    """Runs ``trio.run`` in a daemon thread; asyncio starts, calls into and stops it."""

    def __init__(self, name: str = "trio") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop_requested = False
        self._done: asyncio.Future[None] | None = None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop_requested

    async def start(self, setup: Setup) -> None:
        """Start the thread and run `setup(nursery, portal)` in trio; raises what setup raised."""
        if self._thread is not None:
            raise HostError("trio thread already started")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._done = loop.create_future()
        self._thread = threading.Thread(
            target=self._main, args=(loop, setup, ready, self._done), name=self._name, daemon=True
        )
        self._thread.start()
        try:
            await ready
        except BaseException:
            with contextlib.suppress(HostError):
                await self.stop(5.0)
            raise

    async def stop(self, timeout: float) -> None:
        """Cancel the trio nursery and wait (at most `timeout` s) for the thread to end."""
        thread, done = self._thread, self._done
        if thread is None or done is None:
            return
        self._request_stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(done), timeout)
            await asyncio.to_thread(thread.join, max(0.0, deadline - loop.time()))
        if thread.is_alive():
            raise HostError(f"trio thread {self._name!r} did not stop within {timeout}s")

    async def run_in_trio(self, fn: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
        """Run `fn(*args)` in the trio thread and return its result (or raise its exception)."""
        with self._lock:
            token, nursery = self._token, self._nursery
        if token is None or nursery is None or self._stop_requested:
            raise HostError("trio thread is not running")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        call = _TrioCall(loop, fut, lambda: fn(*args))
        try:
            token.run_sync_soon(call.spawn, nursery)
        except trio.RunFinishedError:
            raise HostError("trio thread is not running") from None
        try:
            return await fut
        except asyncio.CancelledError:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(call.cancel)
            raise

    def run_sync_soon(self, fn: Callable[[*Ts], object], *args: *Ts) -> None:
        """Schedule the plain function `fn(*args)` in the trio thread and return at once."""
        with self._lock:
            token = self._token
        if token is None or self._stop_requested:
            raise HostError("trio thread is not running")
        try:
            token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            raise HostError("trio thread is not running") from None

    def _request_stop(self) -> None:
        with self._lock:
            self._stop_requested = True
            token, nursery = self._token, self._nursery
        if token is not None and nursery is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(nursery.cancel_scope.cancel)

    def _main(
        self,
        loop: asyncio.AbstractEventLoop,
        setup: Setup,
        ready: asyncio.Future[None],
        done: asyncio.Future[None],
    ) -> None:
        try:
            trio.run(self._trio_main, loop, setup, ready)
        except BaseException as exc:
            log.error("trio thread %r crashed", self._name, exc_info=True)
            _post(loop, _resolve, ready, outcome.Error(HostError(f"trio thread crashed: {exc!r}")))
        finally:
            _post(loop, _resolve, done, outcome.Value(None))

    async def _trio_main(
        self, loop: asyncio.AbstractEventLoop, setup: Setup, ready: asyncio.Future[None]
    ) -> None:
        token = trio.lowlevel.current_trio_token()
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            with self._lock:
                self._token, self._nursery = token, nursery
                if self._stop_requested:
                    nursery.cancel_scope.cancel()
            try:
                await setup(nursery, Portal(loop, token))
            except Exception as exc:
                failure = exc
                nursery.cancel_scope.cancel()
            else:
                _post(loop, _resolve, ready, outcome.Value(None))
                await trio.sleep_forever()
        # No-op once `ready` is resolved; otherwise setup failed or stop() came first.
        error = failure or HostError("trio thread stopped during startup")
        _post(loop, _resolve, ready, outcome.Error(error))
