"""Following a devnet of several training runs at once (competitions, `--runs tiny:0.3,...`).

Each run has its own orchestrator, miners and validator nodes (the validators of every run share
their hotkeys) and its own subnet mechanism, whose share of the emission the chain applies. The
follower prints each run's progress, waits until every run is done, its last windows audited and
the validators' weights paid out by a Yuma epoch, then writes the summary: per run its losses,
its mechanism's share and the share of the last epoch's miner emission its miners received
(`emission_share`; the goal is the configured share, within 5 %), and the chain's uids.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from node.devnet.net import Devnet
from node.devnet.progress import progress_line
from node.devnet.summary import build_summary, chain_summary, quality_summary, write_summary
from node.devnet.train import INTERRUPTED


class CompetitionFollower:
    def __init__(
        self,
        net: Devnet,
        *,
        summary: Path | None,
        timeout_s: float = 0.0,
        audit_wait_s: float = 120.0,
        poll_s: float = 1.0,
    ) -> None:
        self.net = net
        self.summary_path = summary
        self.timeout_s = timeout_s
        self.audit_wait_s = audit_wait_s
        self.poll_s = poll_s
        self.statuses: dict[str, dict[str, Any]] = {}
        self._shown: dict[str, tuple[Any, bool]] = {}

    def _section(self, name: str, key: str) -> dict[str, Any]:
        return dict((self.statuses.get(name) or {}).get(key) or {})

    def _orch(self, run: str) -> dict[str, Any]:
        return self._section(f"{run}-orchestrator", "orchestrator")

    def _validators(self, run: str) -> list[str]:
        return [n.name for n in self.net.validators if n.spec.run == run and n.running]

    async def poll(self) -> None:
        for name, doc in (await self.net.statuses()).items():
            if doc is not None:
                self.statuses[name] = doc
        for r in self.net.plan.runs:
            orch = self._orch(r.run_id)
            key = (orch.get("window"), bool(orch.get("done")))
            if orch and key != self._shown.get(r.run_id):
                self._shown[r.run_id] = key
                line = progress_line(orch, self.net.plan.windows)
                print(f"devnet: {r.run_id} ({r.model}, {r.share:g}): {line}", flush=True)

    def done(self) -> bool:
        return all(self._orch(r.run_id).get("done") for r in self.net.plan.runs)

    def audited(self) -> bool:
        windows = self.net.plan.windows
        return all(
            (self._section(v, "validator").get("next_window") or 0) >= windows
            for r in self.net.plan.runs
            for v in self._validators(r.run_id)
        )

    def paid_after(self, block: int) -> bool:
        """Every validator node set weights at or after `block`, and an epoch ran since."""
        last_epoch = self._section("chain", "chain").get("last_epoch")
        for r in self.net.plan.runs:
            for v in self._validators(r.run_id):
                last = (self._section(v, "validator").get("weights") or {}).get("last_block")
                if not (isinstance(last, int) and last >= block):
                    return False
                if not (isinstance(last_epoch, int) and last_epoch > last):
                    return False
        return True

    async def _until(self, ready: Any, seconds: float, stop: asyncio.Event) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not stop.is_set() and loop.time() < deadline:
            await self.poll()
            if ready():
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll_s)
        return False

    async def follow(self, stop: asyncio.Event) -> int:
        loop = asyncio.get_running_loop()
        started = loop.time()
        code = INTERRUPTED
        try:
            limit = self.timeout_s or float("inf")
            if await self._until(self.done, limit, stop):
                code = 0
                if not await self._until(self.audited, self.audit_wait_s, stop):
                    print("devnet: the last windows were not all audited in time")
                block = self._section("chain", "chain").get("block")
                plan = self.net.plan
                wait = 3 * plan.tempo * plan.block_time_s + 10.0
                if isinstance(block, int) and not await self._until(
                    lambda: self.paid_after(block), wait, stop
                ):
                    print("devnet: no epoch paid every run's final weights in time")
            elif not stop.is_set():
                print(f"devnet: the runs were not done after {self.timeout_s:.0f}s")
                code = 1
            if any(
                o.returncode is not None for o in self.net.nodes if o.spec.role == "orchestrator"
            ):
                code = 1
        finally:
            self._finish(code, loop.time() - started)
        return code

    def summary(self, wall_s: float) -> dict[str, Any]:
        plan = self.net.plan
        chain = self._section("chain", "chain")
        emission = {n["hotkey"]: float(n.get("emission", 0.0)) for n in chain.get("neurons") or []}
        runs: dict[str, Any] = {}
        for index, r in enumerate(plan.runs):
            miners = [n for n in self.net.miners if n.spec.run == r.run_id]
            doc = build_summary(
                self._orch(r.run_id),
                {n.name: (n.peer_id, self.statuses.get(n.name)) for n in miners},
                model=r.model,
                stages=plan.stages,
                wall_s=wall_s,
            )
            names = {n.peer_id: n.name for n in miners}
            quality = {
                v: quality_summary(self._section(v, "validator").get("quality"), names)
                for v in self._validators(r.run_id)
            }
            runs[r.run_id] = {
                "model": r.model, "share": r.share, "mechanism": index,
                "complete": doc["complete"], "windows": len(doc["windows"]),
                "first_loss": doc["first_loss"], "final_loss": doc["final_loss"],
                "miner_emission": sum(emission.get(n.hotkey, 0.0) for n in miners),
                "weights": {v: q.get("weights", {}) for v, q in quality.items()},
            }  # fmt: skip
        total = sum(r["miner_emission"] for r in runs.values())
        for r in runs.values():
            r["emission_share"] = r["miner_emission"] / total if total > 0 else 0.0
        nodes = {
            n.hotkey: (n.spec.wallet or n.name, n.spec.role) for n in self.net.nodes if n.hotkey
        }
        return {
            "runs": runs,
            "complete": all(r["complete"] for r in runs.values()),
            "max_share_error": max(abs(r["emission_share"] - r["share"]) for r in runs.values()),
            "chain": chain_summary(chain, nodes),
            "wall_s": round(wall_s, 3),
        }

    def _finish(self, code: int, wall_s: float) -> None:
        doc = self.summary(wall_s)
        for run_id, r in doc["runs"].items():
            print(
                f"devnet: {run_id} ({r['model']}): {r['windows']} windows, loss "
                f"{r['first_loss']} -> {r['final_loss']}; mechanism {r['mechanism']} share "
                f"{r['share']:g}, its miners got {r['emission_share']:.3f} of the last epoch's "
                "miner emission"
            )
        if code == INTERRUPTED:
            print("devnet: interrupted", file=sys.stderr)
        if self.summary_path is not None:
            write_summary(self.summary_path, doc)
            print(f"devnet: summary written to {self.summary_path}")
        else:
            print(json.dumps({k: doc[k] for k in ("complete", "max_share_error")}))
