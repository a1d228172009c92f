"""One pay rule: run share -> stage weight -> validated work x quality x capacity -> weights.

`docs/pay.md` states it with a worked example. The parts, as pure functions:
  - `compute_shares`: each stage's share of the model's compute per token (matmul FLOPs of its
    weights plus attention, forward; the backward is a fixed multiple of it);
  - `stage_weights`: the emission of a run split over its stages (SN19's task weights, adding up
    to 1): w_s proportional to c_s x scarcity_s, where scarcity_s = target_s / miners_s and
    target_s = (all miners of the run) x c_s is the number of miners the stage would have if
    miners were spread by compute. A stage with fewer miners than its compute asks for pays
    more per miner, which draws miners to it; stages without miners are left out;
  - `capacity_factors`: a miner declares a capacity (tokens/s) and the orchestrator routes by
    it; the validator divides the throughput it saw by the declared capacity, compares that
    with the stage's median, and pays min(1, ratio / tolerance) of the work: a miner that
    declares twice what it delivers is paid about half;
  - `quality_multipliers`: the Templar final scores, power-normalised within the stage and
    scaled so that they average 1 over the stage's miners; a stage where nobody scores above 0
    (yet) has no quality signal and is paid on validated work alone (1 for every member):
    replay audits, drawn with certainty for a miner whose delta did not help, prove the rest;
  - `quality_gates` (the default, `validator.quality_pay = "gate"`): 1 (times the sync score)
    for a miner whose contributions helped more often than not, 0 for one whose binary moving
    average is below 0; stage-mates doing the same honest work are then paid by work alone;
  - `miner_weights`: run_share x w_s x v_m / sum of v over the stage, v_m = validated work x
    quality x capacity factor. Weight of a stage whose v are all 0 is not given to anyone here;
    the chain's normalisation spreads it over the rest.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Mapping

import torch

from training.run_spec import RunSpec
from training.stages import StageModule, split_layers


def compute_shares(spec: RunSpec) -> dict[int, float]:
    """Stage -> its share of the forward FLOPs per token (summing to 1)."""
    return dict(_shares(spec.model, spec.vocab_size, spec.n_stages, spec.seq_len))


@functools.lru_cache(maxsize=32)
def _shares(
    model: str, vocab_size: int, n_stages: int, seq_len: int
) -> tuple[tuple[int, float], ...]:
    spec = RunSpec(model=model, vocab_size=vocab_size, n_stages=n_stages, seq_len=seq_len)
    config = spec.model_config()
    flops: dict[int, float] = {}
    for stage_spec in split_layers(config.n_layers, spec.n_stages):
        with torch.device("meta"):
            module = StageModule(config, stage_spec, seed=None)
        matmul = sum(
            p.numel() for n, p in module.named_parameters() if p.dim() == 2 and "embed" not in n
        )
        attention = 2 * spec.seq_len * config.dim * len(stage_spec.layers)
        flops[stage_spec.index] = 2.0 * matmul + 2.0 * attention
    total = math.fsum(flops.values())
    return tuple((s, f / total) for s, f in sorted(flops.items()))


def stage_weights(compute: Mapping[int, float], miners: Mapping[int, int]) -> dict[int, float]:
    """Stage -> its weight (summing to 1 over the stages with miners; {} without miners)."""
    if any(not (math.isfinite(c) and c > 0) for c in compute.values()):
        raise ValueError("compute shares must be finite and > 0")
    staffed = {s: n for s, n in miners.items() if n > 0 and s in compute}
    if not staffed:
        return {}
    total_compute = math.fsum(compute.values())
    everyone = sum(staffed.values())
    raw = {}
    for s, n in staffed.items():
        share = compute[s] / total_compute
        raw[s] = share * (everyone * share / n)
    total = math.fsum(raw.values())
    return {s: v / total for s, v in sorted(raw.items())}


def capacity_factors(
    declared: Mapping[str, float],
    observed: Mapping[str, float],
    stage_of: Mapping[str, int],
    *,
    tolerance: float = 0.8,
) -> dict[str, float]:
    """Miner -> pay factor in [0, 1] for its declared capacity against its observed throughput
    (both tokens/s), relative to its stage's median of observed / declared."""
    if not 0 < tolerance <= 1:
        raise ValueError("tolerance must be in (0, 1]")
    ratios: dict[str, float] = {}
    for m in stage_of:
        d, o = declared.get(m, 0.0), observed.get(m, 0.0)
        ratios[m] = o / d if d > 0 and math.isfinite(d) and math.isfinite(o) else 0.0
    out: dict[str, float] = {}
    for stage in set(stage_of.values()):
        members = [m for m, s in stage_of.items() if s == stage]
        median = statistics.median(ratios[m] for m in members)
        for m in members:
            out[m] = 1.0 if median <= 0 else min(1.0, ratios[m] / median / tolerance)
    return out


def quality_multipliers(
    final: Mapping[str, float], stage_of: Mapping[str, int], *, power: float = 2.0
) -> dict[str, float]:
    """Miner -> its quality multiplier (see the module docstring); miners of `stage_of`
    without a final score count as 0."""
    out: dict[str, float] = {}
    for stage in set(stage_of.values()):
        members = [m for m, s in stage_of.items() if s == stage]
        powered = {m: max(final.get(m, 0.0), 0.0) ** power for m in members}
        total = math.fsum(powered.values())
        for m in members:
            out[m] = len(members) * powered[m] / total if total > 0 else 1.0
    return out


def quality_gates(
    binary: Mapping[str, float], sync: Mapping[str, float], stage_of: Mapping[str, int]
) -> dict[str, float]:
    """Miner -> its quality gate: 0 when its contributions hurt or did nothing more often than
    they helped (binary moving average below 0), else its sync score; a miner not screened yet
    passes (1). A stage where nobody passes has no quality signal: 1 for every member."""
    out: dict[str, float] = {}
    for stage in set(stage_of.values()):
        members = [m for m, s in stage_of.items() if s == stage]
        gates = {m: 0.0 if binary.get(m, 0.0) < 0 else sync.get(m, 1.0) for m in members}
        passed = any(g > 0 for g in gates.values())
        out.update({m: g if passed else 1.0 for m, g in gates.items()})
    return out


def miner_weights(
    *,
    run_share: float,
    stages: Mapping[int, float],
    stage_of: Mapping[str, int],
    validated: Mapping[str, float],
    quality: Mapping[str, float] | None = None,
    capacity: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Miner -> its weight within the whole emission (see the module docstring).
    `quality` / `capacity` None: not applied (factor 1)."""
    if not 0 <= run_share <= 1:
        raise ValueError("run_share must be in [0, 1]")
    value = {
        m: max(validated.get(m, 0.0), 0.0)
        * (1.0 if quality is None else quality.get(m, 0.0))
        * (1.0 if capacity is None else capacity.get(m, 1.0))
        for m in stage_of
    }
    out: dict[str, float] = {}
    for stage, weight in stages.items():
        members = [m for m, s in stage_of.items() if s == stage]
        total = math.fsum(value[m] for m in members)
        for m in members:
            out[m] = run_share * weight * value[m] / total if total > 0 else 0.0
    return out
