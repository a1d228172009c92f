"""Chain figures: Yuma consensus at a full subnet's size, and the devnet chain under load.

- `yuma_epoch_ms_256`: one `verification.yuma.epoch` (Yuma 3 with liquid alpha) at `--uids`
  uids, `--validators` of them staked validators weighting every miner, bonds from earlier
  epochs; the median of `--repeat` (`classic_epoch_ms`: the classic bonds). Goal: under 50 ms.
- A devnet chain node, and a client node in a process of its own as validators are on their own
  machines (real libp2p hosts and LMDB): `--validators` hotkeys registered and staked, each
  setting weights on `--uids` uids.
  `extrinsics_per_s`: signed set_weights the chain accepted per second with 64 in flight (goal
  at least 1000); `set_weights_round_trip_ms`: the median of one at a time;
  `epoch_matches_pure`: the chain's stored epoch result equals `verification.yuma.epoch` run
  again on the inputs it stored.

    python bench/chain.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import multiprocessing
import statistics
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from bittensor_wallet import Wallet
from scratch import scratch_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.chain.devnet_client import DevnetChain
from node.chain.epoch_record import unpack_inputs
from node.chain.role import ChainComponent
from tests.node_kit import start_local_node
from tests.p2p.endpoint_kit import make_hotkey
from verification.yuma import EpochInputs, epoch

NETUID = 1


def inputs(uids: int, validators: int, seed: int) -> EpochInputs:
    rng = np.random.default_rng(seed)
    stake = np.zeros(uids)
    stake[:validators] = rng.pareto(1.5, validators) + 1.0
    weights = np.zeros((uids, uids))
    weights[:validators, validators:] = rng.random((validators, uids - validators))
    bonds = np.zeros((uids, uids))
    bonds[:validators, validators:] = rng.random((validators, uids - validators)) * 0.1
    return EpochInputs(
        stake=stake,
        weights=weights,
        bonds=bonds,
        validator_permit=stake > 0,
        last_update=np.full(uids, 10_000, dtype=np.int64),
        block_at_registration=rng.integers(0, 9_000, uids).astype(np.int64),
        current_block=10_000,
        liquid_alpha=True,
    )


def timed(x: EpochInputs, repeat: int) -> float:
    epoch(x)  # warm-up
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        epoch(x)
        runs.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(runs), 3)


async def next_epoch(chain: ChainComponent) -> None:
    last = chain.ledger.last_epoch()
    for _ in range(600):
        await asyncio.sleep(0.1)
        if chain.ledger.last_epoch() != last:
            return
    raise TimeoutError("the chain ran no epoch in 60 s")


@dataclass(frozen=True, slots=True)
class ClientJob:
    """What the validators' process needs (sent to it whole: it is a spawned process)."""

    root: str
    names: list[str]
    chain_addrs: list[str]
    chain_peer: str
    admitted: list[str]
    round_trips: int
    count: int


def client_process(conn: Connection, job: ClientJob) -> None:
    """The validators' side, in its own process as on a real network: register, then on the
    parent's word set weights one at a time and then 64 in flight; sends back the figures."""
    asyncio.run(_client(conn, job))


async def _client(conn: Connection, job: ClientJob) -> None:
    root, chain_peer = Path(job.root), job.chain_peer
    recv = functools.partial(asyncio.get_running_loop().run_in_executor, None, conn.recv)
    hotkeys = [Wallet(name=n, hotkey="hk", path=str(root / "wallets")).hotkey for n in job.names]
    node, task = await start_local_node(
        root / "client", ["miner"], hotkeys[0], job.admitted, job.chain_addrs,
        **{"node.log_level": "warning"},
    )  # fmt: skip
    try:
        conn.send(node.endpoint.peer_id)  # type: ignore[union-attr]
        for _ in range(600):  # until it admitted the chain node (its bulk lane known)
            if chain_peer in node.endpoint.sessions:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.1)
        await recv()  # admitted both ways
        clients = [DevnetChain(node.endpoint, chain_peer, h) for h in hotkeys[1:]]  # type: ignore[arg-type]
        for c in clients:
            await c.register(NETUID)
        conn.send("registered")
        miners = await recv()
        await recv()  # the permits are given
        rng = np.random.default_rng(1)

        def weights() -> dict[int, float]:
            return dict(zip(miners, rng.random(len(miners)).tolist(), strict=True))

        trips = []
        for c in clients[: job.round_trips]:
            started = time.perf_counter()
            await c.set_weights(NETUID, weights())
            trips.append((time.perf_counter() - started) * 1000)
        flight = asyncio.Semaphore(64)

        async def one(c: DevnetChain) -> None:
            async with flight:
                await c.set_weights(NETUID, weights())

        started = time.perf_counter()
        await asyncio.gather(*(one(clients[i % len(clients)]) for i in range(job.count)))
        conn.send((job.count / (time.perf_counter() - started), statistics.median(trips)))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def devnet_figures(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    names = ["client"] + [f"v{i}" for i in range(args.validators)]
    keys = {n: make_hotkey(root / "wallets", n) for n in ["chain", *names]}
    admitted = [keys["chain"].ss58_address, keys["client"].ss58_address]
    settings: dict[str, Any] = {
        "devnet_chain.netuid": NETUID, "devnet_chain.block_time_s": 0.1,
        "devnet_chain.stakes": {keys[n].ss58_address: 100.0 for n in names[1:]},
        "devnet_chain.params": {"tempo": 20, "weights_rate_limit": 0, "min_allowed_weights": 1,
                                "max_allowed_validators": args.validators},
        "node.log_level": "warning",
    }  # fmt: skip
    chain_node, chain_task = await start_local_node(
        root / "chain", ["chain"], keys["chain"], admitted, **settings
    )
    ctx = multiprocessing.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    client = ctx.Process(
        target=client_process,
        args=(child_conn, ClientJob(
            root=str(root), names=names, chain_addrs=chain_node.p2p_addrs,
            chain_peer=chain_node.endpoint.peer_id,  # type: ignore[union-attr]
            admitted=admitted, round_trips=args.round_trips, count=args.extrinsics,
        )),
        daemon=True,
    )  # fmt: skip
    client.start()
    loop = asyncio.get_running_loop()
    try:
        chain = next(r for r in chain_node._roles if isinstance(r, ChainComponent))
        client_peer = await loop.run_in_executor(None, conn.recv)
        for _ in range(600):  # until the chain admitted the client (its bulk lane known)
            if client_peer in chain_node.endpoint.sessions:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.1)
        conn.send("admitted")
        assert await loop.run_in_executor(None, conn.recv) == "registered"
        for i in range(args.validators, args.uids):  # miners: registered by the chain itself
            chain.ledger.register(f"miner-{i}", "", chain.block())
        conn.send(list(range(args.validators, args.uids)))
        await next_epoch(chain)  # it gives the permits
        conn.send("go")
        rate, trip = await loop.run_in_executor(None, conn.recv)
        await next_epoch(chain)
        record = chain.ledger.epochs()[-1]
        again = epoch(unpack_inputs(record["inputs"]))
        names_ = [k for k in record["result"] if k != "new_validator_permit"]
        matches = all(
            np.asarray(getattr(again, k)).tolist() == record["result"][k] for k in names_
        ) and bool(record["inputs"]["weights"])
        return {
            "extrinsics_per_s": round(rate, 1),
            "set_weights_round_trip_ms": round(trip, 3),
            "epoch_matches_pure": matches,
            "accepted": chain.counters["set_weights/ok"],
            "refused": {
                k: v
                for k, v in chain.counters.items()
                if k.startswith("set_weights/") and k != "set_weights/ok"
            },
        }
    finally:
        await loop.run_in_executor(None, client.join, 15.0)  # it stops its node itself
        if client.is_alive():
            client.kill()
            client.join()
        chain_task.cancel()
        await asyncio.gather(chain_task, return_exceptions=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--uids", type=int, default=256)
    parser.add_argument("--validators", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--extrinsics", type=int, default=2000)
    parser.add_argument("--round-trips", type=int, default=50)
    args = parser.parse_args()
    x = inputs(args.uids, args.validators, seed=0)
    with scratch_dir("tessera-chain-bench-") as root:
        figures = asyncio.run(devnet_figures(args, root))
    out: dict[str, Any] = {
        "uids": args.uids,
        "validators": args.validators,
        f"yuma_epoch_ms_{args.uids}": timed(x, args.repeat),
        "classic_epoch_ms": timed(dataclasses.replace(x, yuma3=False), args.repeat),
        **figures,
        "goals": {"yuma_epoch_ms_256": "< 50", "extrinsics_per_s": ">= 1000"},
    }
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
