"""Process entry of `tessera node`: logging, identity, uvloop, signals and the exit code.

SIGTERM and SIGINT stop the node (exit 0, reason logged); a second signal, or a shutdown that
overruns its bound, exits at once with 1. A crash of any task exits 1 so systemd restarts us.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import uvloop

from node.chain.link import load_wallet
from node.config import NodeConfig
from node.node_service import NodeService
from node.sdnotify import SystemdNotifier
from node.service import Service, run_service
from p2p.binding import HotkeyBinding
from p2p.errors import BindingError, IdentityError
from p2p.identity import NodeKey

log = logging.getLogger("tessera")

EXIT_OK, EXIT_CRASH, EXIT_CONFIG = 0, 1, 2
KEY_FILE = "node.key"
BINDING_FILE = "binding.json"


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        force=True,
    )
    if level != "debug":  # libp2p logs routine dial retries at INFO
        logging.getLogger("libp2p").setLevel(logging.WARNING)


def load_identity(home: Path) -> tuple[NodeKey, HotkeyBinding | None]:
    """The node key (created on first start) and the hotkey binding, if one is valid."""
    key_path = home / KEY_FILE
    existed = key_path.exists()
    key = NodeKey.load_or_create(key_path)
    if not existed:
        log.info("created node key %s (peer id %s)", key_path, key.peer_id)
    binding = None
    if (home / BINDING_FILE).exists():
        binding = HotkeyBinding.load(home / BINDING_FILE)
        try:
            binding.verify(peer_id=key.peer_id)
        except BindingError as exc:
            log.warning("ignoring hotkey binding %s: %s", home / BINDING_FILE, exc)
            binding = None
    return key, binding


def run_node(config: NodeConfig, *, extra_services: Sequence[Service] = ()) -> int:
    setup_logging(config.node.log_level)
    try:
        config.node.home.mkdir(parents=True, exist_ok=True)
        key, binding = load_identity(config.node.home)
        if config.chain.network:
            load_wallet(config.chain)  # the hotkey that signs for the node must be there
    except (IdentityError, BindingError, OSError) as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    notifier = SystemdNotifier()
    service = NodeService(
        config, key, binding=binding, notifier=notifier, extra_services=extra_services
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        code = runner.run(_supervise(service, notifier, config.node.shutdown_timeout_s))
    return _exit_past_workers(code)


def _exit_past_workers(code: int) -> int:
    """Exit at once when worker threads (an audit replay, a screen, a dataset build) still run.

    Interpreter finalisation stops daemon threads where they stand; one inside torch's C++ then
    aborts the process (SIGABRT, exit -6) after the node had stopped cleanly. Everything the node
    owns is closed by now (its store first of all), so skipping finalisation loses nothing.
    """
    busy = [t.name for t in threading.enumerate() if t.daemon and t.is_alive()]
    if not busy:
        return code
    log.info("exiting with %s still running in the background", ", ".join(sorted(busy)))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _supervise(service: NodeService, notifier: SystemdNotifier, timeout: float) -> int:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    stop_reason: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        if stop_reason:
            log.error("%s received again during shutdown; exiting now", sig.name)
            os._exit(EXIT_CRASH)
        stop_reason.append(sig.name)
        log.info("stopping: %s received", sig.name)
        notifier.notify("STOPPING=1")
        _hard_stop_after(timeout * 3)
        main.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await run_service(service)
    except asyncio.CancelledError:
        if stop_reason:
            log.info("stopped cleanly (%s)", stop_reason[0])
            return EXIT_OK
        raise
    except Exception as exc:  # the supervisor's job: log every failure, exit non-zero
        for leaf in _leaves(exc):
            log.error("node crashed: %s", leaf, exc_info=leaf)
        notifier.notify("STOPPING=1")
        return EXIT_CRASH
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.error("node service returned without being asked to stop")
    return EXIT_CRASH


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _hard_stop_after(seconds: float) -> None:
    def expire() -> None:
        log.error("shutdown did not finish within %.1fs; exiting now", seconds)
        os._exit(EXIT_CRASH)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
