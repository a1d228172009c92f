"""Devnet node processes: identity set-up, start, readiness, status polling, kill, restart, stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from node.daemon import KEY_FILE
from node.keygen import bind_hotkey
from node.node_service import ENDPOINTS_FILE
from p2p.identity import NodeKey


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    role: str
    fault: str = ""
    """A miner's `--fault KIND` ("" = honest)."""
    run: str = ""
    """The run (competition) it works in ("" = the devnet's one run: the node default)."""
    wallet: str = ""
    """Its wallet's name ("" = its own name); a validator of several runs shares one hotkey."""


class DevnetNode:
    """One `tessera node` child process with its own home under the devnet's root."""

    def __init__(self, spec: NodeSpec, root: Path, *, quiet: bool = False) -> None:
        self.spec = spec
        self.home = root / spec.name
        self.log_path = self.home / "node.log"
        self.endpoints: dict[str, Any] = {}
        self.quiet = quiet
        self._proc: asyncio.subprocess.Process | None = None
        self._bootstrap: list[str] = []
        self._extra: list[str] = []
        self.hotkey = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def peer_id(self) -> str:
        return str(self.endpoints.get("peer_id", ""))

    @property
    def http(self) -> str:
        return str(self.endpoints.get("http", ""))

    def prepare_identity(self) -> str:
        """Create the node key, a test wallet and the hotkey binding; return the hotkey."""
        self.home.mkdir(parents=True, exist_ok=True)
        key = NodeKey.load_or_create(self.home / KEY_FILE)
        wallet = Namespace(
            wallet_name=self.spec.wallet or self.spec.name,
            wallet_hotkey="default",
            wallet_path=self.home.parent / "wallets",
            test_wallet=True,
            run_id="",
            binding_days=1.0,
        )
        self.hotkey = bind_hotkey(self.home, key, wallet).hotkey
        return self.hotkey

    async def start(
        self,
        *,
        bootstrap: list[str],
        extra_args: list[str],
        timeout: float = 30.0,
        http: str = "127.0.0.1:0",
        listen: list[str] | None = None,
    ) -> None:
        self._bootstrap, self._extra = list(bootstrap), list(extra_args)
        (self.home / ENDPOINTS_FILE).unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "node", "node", "--home", str(self.home)]
        cmd += ["--role", self.spec.role, "--http", http]
        if self.spec.fault:
            cmd += ["--fault", self.spec.fault]
        if self.spec.run:
            cmd += ["--run", self.spec.run]
        if self.spec.fault == "slow":  # an honest slow miner declares the capacity it has
            cmd += ["--set", "miner.capacity=0.5"]
        for addr in listen or ["/ip4/127.0.0.1/tcp/0"]:
            cmd += ["--listen", addr]
        for addr in bootstrap:
            cmd += ["--bootstrap", addr]
        cmd += extra_args
        with self.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdout=log,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the devnet, which stops nodes one by one
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        await self._wait_ready(timeout)

    async def restart(self, *, timeout: float = 30.0) -> None:
        """Start again with the same arguments on the same HTTP and libp2p addresses, so peers
        that bootstrap to this node find it again. The process must have exited."""
        if self.running:
            raise RuntimeError(f"{self.name} is still running")
        http = self.http.removeprefix("http://") or "127.0.0.1:0"
        listen = [a.split("/p2p/")[0] for a in self.endpoints.get("p2p", [])] or None
        await self.start(
            bootstrap=self._bootstrap,
            extra_args=self._extra,
            timeout=timeout,
            http=http,
            listen=listen,
        )

    async def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        path = self.home / ENDPOINTS_FILE
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self._proc.returncode is not None:
                raise RuntimeError(
                    f"{self.spec.name} exited with {self._proc.returncode}; see {self.log_path}"
                )
            if path.exists():
                data = json.loads(path.read_text())
                if data.get("pid") == self._proc.pid:
                    self.endpoints = data
                    if not self.quiet:
                        print(f"devnet: {self.spec.name:<13} {data['http']}  {data['peer_id']}")
                    return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.spec.name} not ready after {timeout}s; see {self.log_path}")

    async def kill(self) -> int | None:
        """SIGKILL (a crash: no clean shutdown) and reap the process."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            proc.kill()
        return await proc.wait()

    async def stop(self, timeout: float) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        return proc.returncode

    async def status(self, timeout: float = 3.0) -> dict[str, Any] | None:
        """This node's `/status`, or None when it does not answer."""
        return (await fetch_statuses([self], timeout=timeout))[0]


async def fetch_statuses(
    nodes: list[DevnetNode], *, timeout: float = 3.0
) -> list[dict[str, Any] | None]:
    async def one(session: aiohttp.ClientSession, node: DevnetNode) -> dict[str, Any] | None:
        if not node.running:
            return None
        try:
            async with session.get(f"{node.endpoints['http']}/status") as response:
                doc: dict[str, Any] = await response.json()
                return doc
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
            return None

    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        return list(await asyncio.gather(*(one(session, n) for n in nodes)))


def admitted_ids(status: dict[str, Any]) -> set[str]:
    return {peer["peer_id"] for peer in status["admitted_peers"]}


def all_admitted(statuses: list[dict[str, Any] | None]) -> bool:
    """Every node has admitted every other (hello exchanged, bindings verified)."""
    if any(s is None for s in statuses):
        return False
    ids = {s["peer_id"] for s in statuses if s}
    return all(ids - {s["peer_id"]} <= admitted_ids(s) for s in statuses if s)


def print_table(nodes: list[DevnetNode], statuses: list[dict[str, Any] | None]) -> None:
    print(f"{'node':<13} {'role':<13} {'peer id':<14} {'admitted':>8}  http")
    for node, status in zip(nodes, statuses, strict=True):
        peers = len(admitted_ids(status)) if status else "?"
        short = node.endpoints.get("peer_id", "?")[-12:]
        print(
            f"{node.spec.name:<13} {node.spec.role:<13} …{short:<13} {peers:>8}  "
            f"{node.endpoints.get('http', '-')}"
        )
