"""Chain figures: Yuma consensus at a full subnet's size, and the devnet chain under load.

- `yuma_epoch_ms_256`: one `verification.yuma.epoch` (Yuma 3 with liquid alpha) at `--uids`
  uids, `--validators` of them staked validators weighting every miner, bonds from earlier
  epochs; the median of `--repeat` (`classic_epoch_ms`: the classic bonds). Goal: under 50 ms.
- A devnet chain node and a client node (real libp2p hosts and LMDB, one event loop):
  `--validators` hotkeys registered and staked, each setting weights on `--uids` uids.
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
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

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


async def devnet_figures(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="tessera-chain-bench-"))
    hotkeys = [make_hotkey(root / "wallets", f"v{i}") for i in range(args.validators)]
    node_keys = [make_hotkey(root / "wallets", n) for n in ("chain", "client")]
    admitted = [h.ss58_address for h in node_keys]
    settings: dict[str, Any] = {
        "devnet_chain.netuid": NETUID, "devnet_chain.block_time_s": 0.1,
        "devnet_chain.stakes": {h.ss58_address: 100.0 for h in hotkeys},
        "devnet_chain.params": {"tempo": 20, "weights_rate_limit": 0, "min_allowed_weights": 1,
                                "max_allowed_validators": args.validators},
        "node.log_level": "warning",
    }  # fmt: skip
    chain_node, chain_task = await start_local_node(
        root / "chain", ["chain"], node_keys[0], admitted, **settings
    )
    client_node, client_task = await start_local_node(
        root / "client", ["miner"], node_keys[1], admitted, chain_node.p2p_addrs,
        **{"node.log_level": "warning"},
    )  # fmt: skip
    try:
        chain = next(r for r in chain_node._roles if isinstance(r, ChainComponent))
        peer = chain_node.endpoint.peer_id  # type: ignore[union-attr]
        me = client_node.endpoint.peer_id  # type: ignore[union-attr]
        for _ in range(600):  # until both admitted each other (the bulk lane's address known)
            if peer in client_node.endpoint.sessions and me in chain_node.endpoint.sessions:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.1)
        clients = [DevnetChain(client_node.endpoint, peer, h) for h in hotkeys]  # type: ignore[arg-type]
        for c in clients:
            await c.register(NETUID)
        for i in range(args.validators, args.uids):  # miners: registered by the chain itself
            chain.ledger.register(f"miner-{i}", "", chain.block())
        await next_epoch(chain)  # it gives the permits
        rng = np.random.default_rng(1)
        miners = list(range(args.validators, args.uids))

        def weights() -> dict[int, float]:
            return {u: float(w) for u, w in zip(miners, rng.random(len(miners)), strict=True)}

        trips = []
        for c in clients[: args.round_trips]:
            started = time.perf_counter()
            await c.set_weights(NETUID, weights())
            trips.append((time.perf_counter() - started) * 1000)
        count, flight = args.extrinsics, asyncio.Semaphore(64)

        async def one(c: DevnetChain) -> None:
            async with flight:
                await c.set_weights(NETUID, weights())

        started = time.perf_counter()
        await asyncio.gather(*(one(clients[i % len(clients)]) for i in range(count)))
        rate = count / (time.perf_counter() - started)
        await next_epoch(chain)
        record = chain.ledger.epochs()[-1]
        again = epoch(unpack_inputs(record["inputs"]))
        names = [k for k in record["result"] if k != "new_validator_permit"]
        matches = all(
            np.asarray(getattr(again, k)).tolist() == record["result"][k] for k in names
        ) and bool(record["inputs"]["weights"])
        return {
            "extrinsics_per_s": round(rate, 1),
            "set_weights_round_trip_ms": round(statistics.median(trips), 3),
            "epoch_matches_pure": matches,
            "accepted": chain.counters["set_weights/ok"],
            "refused": {
                k: v
                for k, v in chain.counters.items()
                if k.startswith("set_weights/") and k != "set_weights/ok"
            },
        }
    finally:
        for task in (client_task, chain_task):
            task.cancel()
        await asyncio.gather(client_task, chain_task, return_exceptions=True)


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
    out: dict[str, Any] = {
        "uids": args.uids,
        "validators": args.validators,
        f"yuma_epoch_ms_{args.uids}": timed(x, args.repeat),
        "classic_epoch_ms": timed(dataclasses.replace(x, yuma3=False), args.repeat),
        **asyncio.run(devnet_figures(args)),
        "goals": {"yuma_epoch_ms_256": "< 50", "extrinsics_per_s": ">= 1000"},
    }
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
