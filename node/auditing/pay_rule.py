"""The validator's weights under the one pay rule (`verification.stage_pay`, `docs/pay.md`).

Inputs from the validator's records: each miner's validated work under the pay rules
(`PayBook.incentives`: decayed backward units, audit forfeits, escrow), the screens of the
windows within the decay horizon (stage of each miner, staffing of the stages, declared
capacities, window seconds, the run's spec) and, where `quality_pay` asks for it, the Templar
score book, read as a gate (`"gate"`) or as Templar's power-normalised scores (`"templar"`;
`"off"`, the default, leaves quality out of the pay). Without any screen (the screen off) the
weights are the validated work alone, times the run's share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from training.run_spec import RunSpec
from verification.stage_pay import (
    capacity_factors,
    compute_shares,
    miner_weights,
    quality_gates,
    quality_multipliers,
    stage_weights,
)
from verification.templar import TemplarBook


@dataclass(frozen=True, slots=True)
class PayOut:
    weights: dict[str, float]
    """Miner -> its share of the emission (the run's share at most, summed)."""
    stages: dict[int, float] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)
    capacity: dict[str, float] = field(default_factory=dict)


def compose(
    validated: dict[str, float],
    screens: dict[int, dict[str, Any]],
    book: TemplarBook | None,
    *,
    run_share: float,
    tolerance: float,
    quality_pay: str = "off",
) -> PayOut:
    """`screens`: window -> screen record of the windows that count (the decay horizon)."""
    if not screens:
        total = math.fsum(v for v in validated.values() if v > 0)
        weights = {
            m: run_share * max(v, 0.0) / total if total else 0.0 for m, v in validated.items()
        }
        return PayOut(weights)
    latest = screens[max(screens)]
    spec = RunSpec.from_record(dict(latest["spec"]))
    stage_of: dict[str, int] = {}
    worked: dict[str, float] = {}
    seconds: dict[str, float] = {}
    declared: dict[str, float] = {}
    for _, row in sorted(screens.items()):
        secs = float(row.get("seconds") or 0.0)
        for miner, stage in row["stage_of"].items():
            stage_of[miner] = int(stage)
            if secs > 0:
                units = float(row.get("work", {}).get(miner, 0))
                worked[miner] = worked.get(miner, 0.0) + units * int(row["tokens_per_batch"])
                seconds[miner] = seconds.get(miner, 0.0) + secs
            if miner in row.get("capacity", {}):
                declared[miner] = float(row["capacity"][miner])
    paid = {m: s for m, s in stage_of.items() if validated.get(m, 0.0) > 0}
    staffing: dict[int, int] = {}
    for stage in latest["stage_of"].values():
        staffing[int(stage)] = staffing.get(int(stage), 0) + 1
    for stage in set(paid.values()):
        staffing.setdefault(stage, 1)
    stages = stage_weights(compute_shares(spec), staffing)
    observed = {m: worked[m] / seconds[m] for m in worked if seconds.get(m, 0.0) > 0}
    capacity = (
        capacity_factors(declared, observed, paid, tolerance=tolerance)
        if declared and observed
        else {}
    )
    quality = None
    if book is not None and quality_pay == "templar":
        final = {m: s.final_ma for m, s in book.miners.items()}
        quality = quality_multipliers(final, paid, power=book.params.power_normalisation)
    elif book is not None and quality_pay == "gate":
        binary = {m: s.binary_ma for m, s in book.miners.items()}
        sync = {m: s.sync for m, s in book.miners.items()}
        quality = quality_gates(binary, sync, paid)
    weights = miner_weights(
        run_share=run_share,
        stages=stages,
        stage_of=paid,
        validated=validated,
        quality=quality,
        capacity=capacity or None,
    )
    return PayOut(weights, stages, quality or {}, capacity)
