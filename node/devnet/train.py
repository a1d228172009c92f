"""Following a devnet training run: poll `/status`, show progress, write the summary at the end.

The orchestrator decides when the run is done (`"done"` in its status section: every window
trained and the last one evaluated). A miner or validator that exits is reported and the run goes
on (the orchestrator re-routes); the orchestrator exiting ends the run with an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

from node.devnet.net import Devnet
from node.devnet.progress import ProgressView
from node.devnet.summary import audit_summary, build_summary, chain_summary, write_summary

INTERRUPTED = 130


class RunFollower:
    def __init__(
        self,
        net: Devnet,
        *,
        summary: Path | None,
        poll_s: float = 1.0,
        timeout_s: float = 0.0,
        audit_wait_s: float = 0.0,
        view: ProgressView | None = None,
    ) -> None:
        self.net = net
        self.summary_path = summary
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.audit_wait_s = audit_wait_s
        self.view = view or ProgressView(net.plan.windows)
        self.orch: dict[str, Any] | None = None
        """The last `"orchestrator"` status section seen."""
        self.statuses: dict[str, dict[str, Any]] = {}
        """The last `/status` of each node that answered."""
        self._reported: set[str] = set()

    async def poll(self) -> None:
        for name, doc in (await self.net.statuses()).items():
            if doc is not None:
                self.statuses[name] = doc
                if name == self.net.orchestrator.name and "orchestrator" in doc:
                    self.orch = doc["orchestrator"]

    async def follow(self, stop: asyncio.Event) -> int:
        """Until the run is done (0), the orchestrator fails or time runs out (1), or `stop`."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        code = INTERRUPTED
        try:
            while not stop.is_set():
                await self.poll()
                self.view.update(self.orch)
                if self.orch and self.orch.get("done"):
                    code = 0
                    await self.wait_for_audits(stop)
                    await self.wait_for_payout(stop)
                    break
                if self._check_nodes():
                    code = 1
                    break
                if self.timeout_s and loop.time() - started > self.timeout_s:
                    self.view.message(f"devnet: run not done after {self.timeout_s:.0f}s")
                    code = 1
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.poll_s)
        finally:
            self.view.end()
            if code == INTERRUPTED:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.poll(), timeout=3.0)
            self._finish(code, loop.time() - started)
        return code

    def _chain_section(self) -> dict[str, Any]:
        chain = self.net.chain
        return ((self.statuses.get(chain.name) or {}).get("chain") or {}) if chain else {}

    def paid_after(self, block: int) -> bool:
        """Every running validator set weights at or after `block`, and an epoch ran since."""
        last_epoch = self._chain_section().get("last_epoch")
        for node in self.net.validators:
            weights = ((self.statuses.get(node.name) or {}).get("validator") or {}).get("weights")
            last = (weights or {}).get("last_block")
            if not node.running:
                continue
            if not (isinstance(last, int) and last >= block):
                return False
            if not (isinstance(last_epoch, int) and last_epoch > last):
                return False
        return True

    async def wait_for_payout(self, stop: asyncio.Event) -> None:
        """With a chain: until the validators set weights on the final scores and a Yuma epoch
        paid them out (at most three tempos)."""
        start = self._chain_section().get("block")
        if self.net.chain is None or not isinstance(start, int):
            return
        plan = self.net.plan
        self.view.message("devnet: waiting for the validators' weights and a Yuma epoch")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3 * plan.tempo * plan.block_time_s + 10.0
        while not stop.is_set() and loop.time() < deadline:
            await self.poll()
            if self.paid_after(start):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll_s)
        if not stop.is_set():
            self.view.message("devnet: no epoch paid the final weights in time")

    def audits_done(self) -> bool:
        """Every running validator has audited every window of the run."""
        windows = self.net.plan.windows
        for node in self.net.validators:
            if not node.running:
                continue
            section = (self.statuses.get(node.name) or {}).get("validator") or {}
            if not isinstance(section.get("next_window"), int) or section["next_window"] < windows:
                return False
        return True

    async def wait_for_audits(self, stop: asyncio.Event) -> None:
        """After the run: until the validators audited its last window (or `audit_wait_s`)."""
        if not self.net.validators or self.audit_wait_s <= 0 or self.audits_done():
            return
        self.view.message("devnet: run done; waiting for the validators' audits")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.audit_wait_s
        while not stop.is_set() and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll_s)
            await self.poll()
            if self.audits_done():
                return
        if not stop.is_set():
            self.view.message(f"devnet: audits not done after {self.audit_wait_s:.0f}s")

    def _check_nodes(self) -> bool:
        """Reports nodes that exited; True when the orchestrator is among them."""
        for node in self.net.nodes:
            if node.returncode is None or node.name in self._reported:
                continue
            self._reported.add(node.name)
            self.view.message(
                f"devnet: {node.name} exited with {node.returncode}; log: {node.log_path}"
            )
        return self.net.orchestrator.returncode is not None

    def summary(self, wall_s: float) -> dict[str, Any]:
        miners = {n.name: (n.peer_id, self.statuses.get(n.name)) for n in self.net.miners}
        plan = self.net.plan
        doc = build_summary(
            self.orch,
            miners,
            model=str(plan.run.get("model", "")),
            stages=plan.stages,
            wall_s=wall_s,
        )
        faults = {n.name: n.spec.fault for n in self.net.miners}
        for name, row in doc["work_per_miner"].items():
            row["fault"] = faults.get(name, "")
        names = {n.peer_id: n.name for n in self.net.miners}
        doc["audits"] = {
            n.name: audit_summary((self.statuses.get(n.name) or {}).get("validator"), names)
            for n in self.net.validators
        }
        chain = self.net.chain
        if chain is not None:
            nodes = {n.hotkey: (n.name, n.spec.role) for n in self.net.nodes if n.hotkey}
            section = (self.statuses.get(chain.name) or {}).get("chain")
            doc["chain"] = chain_summary(section, nodes)
        return doc

    def _finish(self, code: int, wall_s: float) -> None:
        doc = self.summary(wall_s)
        print_windows(doc)
        if code == INTERRUPTED:
            print("devnet: interrupted", file=sys.stderr)
        if self.summary_path is not None:
            write_summary(self.summary_path, doc)
            kind = "summary" if doc["complete"] else "partial summary"
            print(f"devnet: {kind} written to {self.summary_path}")


def print_windows(doc: dict[str, Any]) -> None:
    """The per-window table: train loss, tokens/s and held-out perplexity by domain."""
    rows = doc["windows"]
    if not rows:
        return
    domains = sorted({d for r in rows for d in r["eval"]})
    head = f"{'window':>6} {'loss':>8} {'tokens':>8} {'tok/s':>8}"
    print(head + "".join(f" {'ppl ' + d:>12}" for d in domains))
    for r in rows:
        loss = f"{r['loss']:.4f}" if isinstance(r["loss"], int | float) else "-"
        line = f"{r['window']:>6} {loss:>8} {r['tokens'] or 0:>8} {r['tokens_per_s'] or 0:>8.0f}"
        for d in domains:
            ppl = r["eval"].get(d, {}).get("perplexity")
            line += f" {ppl:>12.2f}" if isinstance(ppl, int | float) else f" {'-':>12}"
        print(line)
    for validator, audits in (doc.get("audits") or {}).items():
        for miner, row in sorted((audits.get("miners") or {}).items()):
            fault = (doc["work_per_miner"].get(miner) or {}).get("fault") or "honest"
            print(
                f"devnet: {validator} audits of {miner} ({fault}): {row['pass']} pass, "
                f"{row['fail']} fail, {row['inconclusive']} inconclusive; "
                f"incentive {row['incentive']:g}"
            )
    chain = doc.get("chain")
    if chain and chain["uids"]:
        print(f"devnet: chain at block {chain['block']}, {chain['epochs']} epochs")
        head = f"{'uid':>4} {'name':<13} {'role':<12} {'incentive':>9} {'dividends':>9}"
        print(f"{head} {'emission':>10}")
        for u in chain["uids"]:
            print(
                f"{u['uid']:>4} {u['name']:<13} {u['role']:<12} {u['incentive']:>9.4f} "
                f"{u['dividends']:>9.4f} {u['emission']:>10.2f}"
            )
    rate = doc["tokens_per_s"]
    print(f"devnet: {doc['tokens']} tokens, {rate:,.0f} tokens/s, final loss {doc['final_loss']}")
