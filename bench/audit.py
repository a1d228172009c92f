"""Audit figures: detection per fault kind, false positives, and what an audit costs.

An in-process network of real nodes in one event loop (a real orchestrator, one miner per stage,
one validator auditing every miner of every window, `validator.threads = 1` like the miners) runs
the tiny model. Each fault kind in turn is switched on in one miner (rotating over the stages) for
`--cheat-windows` whole windows, with an honest window between kinds; then the run goes on
honestly until the honest miners' audited units reach `--honest-units`. Prints JSON:

  faults.<kind>: audited_windows (whole windows under the fault that were audited),
      detection_rate (failed / audited), caught_within_windows (audited windows until the
      first fail), reasons
  honest: audited_units, false_positives (units in failed audits of honest miners' windows),
      inconclusive
  cost_ratio: validator CPU seconds per audited miner-window (replay + judge, on its thread)
      ÷ that miner's CPU seconds of compute for the window (its compute thread, per unit)
  not_measured: kinds a one-miner-per-stage pipeline cannot run through (see below)

    python bench/audit.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scratch import scratch_dir

from node.mining import compute, faults
from node.mining.compute import StepResult
from node.mining.state import BatchKey, StageHolding
from node.node_service import NodeService
from node.roles.miner import MinerComponent
from node.roles.orchestrator import OrchestratorComponent
from node.roles.validator import ValidatorComponent
from p2p.tensors import TensorPayload
from training.data.build import build_dataset
from training.run_spec import RunSpec
from verification.verdict import Outcome

SPEC = RunSpec(
    model="tiny", vocab_size=512, n_stages=3, batch_size=2, seq_len=16, batches_per_window=8,
    accumulate=2, lr=1e-2, code_max_bytes=250_000, prose_max_bytes=120_000, math_documents=150,
)  # fmt: skip
KINDS = ("lazy", "random", "stale", "copycat")
NOT_MEASURED = {
    "nan": "refused by the neighbour's envelope check (non_finite): never accepted, no receipt "
    "chain to audit; the route fails instead",
    "late": "the lease expires first; with one miner per stage the window waits for it",
    "free-rider": "signs no backward receipts, so S = 0 by the score book's rule; with one "
    "miner per stage its upstream stage never gets gradients and the window stalls",
}


class Timed(faults.Behaviour):
    """Honest compute (the same `node.mining.compute` calls), timing the compute thread's CPU
    seconds per window; or a fault's behaviour, timed alike."""

    def __init__(self, inner: faults.Behaviour | None = None) -> None:
        self.inner = inner
        self.cpu: defaultdict[int, float] = defaultdict(float)

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        started = time.thread_time()
        try:
            if self.inner is not None:
                return self.inner.forward(h, key, p)
            return compute.forward(h, key, p)
        finally:
            self.cpu[key[0]] += time.thread_time() - started

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        started = time.thread_time()
        try:
            if self.inner is not None:
                return self.inner.backward(h, key, p)
            return compute.backward(h, key, p)
        finally:
            self.cpu[key[0]] += time.thread_time() - started


def role(node: NodeService, cls: type[Any]) -> Any:
    return next(r for r in node._roles if isinstance(r, cls))


async def main_async(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from tests.node_kit import start_local_node
    from tests.p2p.endpoint_kit import make_hotkey

    data = root / "data"
    build_dataset(SPEC.data_config(data))
    hotkeys = [make_hotkey(root / "wallets", f"b{i}") for i in range(5)]
    tasks: list[asyncio.Task[None]] = []

    async def start(name: str, roles: list[str], boot: list[str], **over: Any) -> NodeService:
        admitted = [h.ss58_address for h in hotkeys]
        node, task = await start_local_node(
            root / name, roles, hotkeys[len(tasks)], admitted, boot,
            **{"node.log_level": "warning", **over},
        )  # fmt: skip
        tasks.append(task)
        return node

    orch = await start(
        "orch",
        ["orchestrator"],
        [],
        **{
            "orchestrator.run": SPEC.to_record(),
            "orchestrator.eval_batches": 0,
            "orchestrator.tick_s": 0.05,
            "orchestrator.data_cache": str(data),
        },
    )
    val_node = await start(
        "validator",
        ["validator"],
        orch.p2p_addrs,
        **{
            "validator.audit": False,
            "validator.miners_per_window": SPEC.n_stages,
            "validator.commit_ahead": 500,
            "validator.data_cache": str(data),
        },
    )
    miners = [
        await start(
            f"m{i}",
            ["miner"],
            orch.p2p_addrs,
            **{"miner.threads": 1, "miner.data_cache": str(data)},
        )
        for i in range(SPEC.n_stages)
    ]
    core = role(orch, OrchestratorComponent).core
    validator: ValidatorComponent = role(val_node, ValidatorComponent)
    auditor = validator.auditor
    components: list[MinerComponent] = [role(m, MinerComponent) for m in miners]
    timers = {c.state.peer_id: Timed() for c in components}
    for c in components:
        c.pipeline.behaviour = timers[c.state.peer_id]

    def window() -> int:
        return int(core.run_state().window)

    async def until(w: int) -> None:
        deadline = time.monotonic() + 120
        while window() < w:
            if time.monotonic() > deadline:
                raise TimeoutError(f"window {w} not reached")
            await asyncio.sleep(0.05)
        await auditor.tick()  # keep the validator close behind the run

    while auditor.current_window is None or any(c.state.stage is None for c in components):
        await auditor.tick()
        await asyncio.sleep(0.1)
    started = time.monotonic()
    cheating: dict[tuple[str, int], str] = {}  # (miner, window) -> kind, whole windows only
    partial: set[tuple[str, int]] = set()
    for i, kind in enumerate(KINDS):
        stage = i % SPEC.n_stages
        target = next(c for c in components if c.state.stage == stage)
        peer = target.state.peer_id
        begin = window()
        timers[peer].inner = faults.make(kind)
        await until(begin + args.cheat_windows + 1)
        end = window()
        timers[peer].inner = None
        holding = target.state.holding
        if holding is not None:
            holding.engine.config.lr = SPEC.lr  # stale set it to 0
        partial |= {(peer, begin), (peer, end)}
        cheating |= {(peer, w): kind for w in range(begin + 1, end)}
        await until(end + 2)

    def honest_units() -> int:
        return sum(
            v.units_audited
            for v in validator.records.verdicts()
            if (v.miner, v.window) not in cheating and (v.miner, v.window) not in partial
        )

    while honest_units() < args.honest_units:
        await until(window() + 1)
    await until(window() + 1)
    elapsed = time.monotonic() - started

    verdicts = validator.records.verdicts()
    per_kind: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        mine = sorted(
            (v for v in verdicts if cheating.get((v.miner, v.window)) == kind),
            key=lambda v: v.window,
        )
        fails = [v for v in mine if v.outcome is Outcome.FAIL]
        first = next((i + 1 for i, v in enumerate(mine) if v.outcome is Outcome.FAIL), None)
        per_kind[kind] = {
            "audited_windows": len(mine),
            "detection_rate": len(fails) / len(mine) if mine else None,
            "caught_within_windows": first,
            "reasons": sorted({v.reason.value for v in mine}),
        }
    excluded = set(cheating) | partial
    honest = [v for v in verdicts if (v.miner, v.window) not in excluded]
    ratios = []
    cpu_validator = []
    for cost in auditor.costs:
        key = (cost.miner, cost.window)
        miner_cpu = timers[cost.miner].cpu.get(cost.window, 0.0)
        if key in excluded or miner_cpu <= 0:
            continue
        ratios.append(cost.cpu_seconds / miner_cpu)
        cpu_validator.append(cost.cpu_seconds)
    windows = window()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "spec": SPEC.to_record(),
        "windows": windows,
        "seconds": round(elapsed, 1),
        "faults": per_kind,
        "not_measured": NOT_MEASURED,
        "honest": {
            "audited_units": sum(v.units_audited for v in honest),
            "audited_windows": len(honest),
            "false_positives": sum(v.units_audited for v in honest if v.outcome is Outcome.FAIL),
            "failed_windows": sum(v.outcome is Outcome.FAIL for v in honest),
            "inconclusive": sum(v.outcome is Outcome.INCONCLUSIVE for v in honest),
            "failed": [
                {"miner": v.miner, "window": v.window, "stage": v.stage, "reason": v.reason.value}
                for v in honest
                if v.outcome is Outcome.FAIL
            ],
        },
        "schedule": sorted({(w, k) for (m, w), k in cheating.items()}),
        "cost_ratio": statistics.median(ratios) if ratios else None,
        "cost_ratio_max": max(ratios) if ratios else None,
        "validator_cpu_s_per_window": statistics.median(cpu_validator) if cpu_validator else None,
        "events": dict(auditor.counters),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--cheat-windows", type=int, default=2)
    parser.add_argument("--honest-units", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        with scratch_dir("tessera-audit-bench-") as root:
            result = asyncio.run(main_async(args, root))
        print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
