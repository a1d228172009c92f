"""systemd's notify protocol: READY=1, STATUS=, WATCHDOG=1 and STOPPING=1 over $NOTIFY_SOCKET.

Without NOTIFY_SOCKET (not under systemd) every call is a no-op. The watchdog is petted from the
event loop itself, so a stuck loop stops the pings and systemd restarts the node.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + path[1:] if path.startswith("@") else path
        self._watchdog_s = _watchdog_interval(env)
        self._failed = False

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    @property
    def watchdog_interval_s(self) -> float | None:
        """Half of systemd's WatchdogSec, or None when no watchdog is configured."""
        return self._watchdog_s

    def notify(self, *assignments: str) -> bool:
        if not self._address:
            return False
        message = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self._address)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", self._address, exc)
                self._failed = True
            return False
        return True

    async def watchdog(self) -> None:
        """Pet the watchdog forever; without a configured watchdog just wait."""
        if self._watchdog_s is None:
            await asyncio.Event().wait()
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self._watchdog_s)


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
