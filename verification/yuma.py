"""Yuma consensus as a pure function: one epoch of a subnet, from stake, weights and bonds to
consensus, trust, incentive, dividends, new bonds and emission.

It follows `Pallet::epoch_mechanism` of subtensor's `pallets/subtensor/src/epoch/run_epoch.rs`
and `math.rs` (read at commit 14bc6f9f, June 2026), step for step and with subtensor's names:
the active mask from `last_update` and `activity_cutoff`; stake normalised; permits from the
previous epoch (the next ones are the top `max_allowed_validators` by stake); active stake of
permitted, active validators; weights masked for forbidden rows, self weights (except the
subnet owner's) and outdated weights (set at or before the target's registration), then row
normalised; consensus as the stake-weighted median of each column at `kappa`; weights clipped
to consensus; validator trust the clipped row sums; incentive the normalised clipped,
stake-weighted column sums; bonds towards `W + bonds_penalty·(clipped - W)` by the bonds moving
average (Yuma 3, with the per-bond liquid alpha as an option, or the classic stake-weighted
EMA); dividends from bonds and incentive; emission split between incentive (miners) and
dividends (validators), and by active stake (else stake) when nobody's weights count.

Where it differs: float64 instead of I32F32/u16 fixed point (proportions agree to about 1e-8;
a stake split that lands exactly on the median's boundary may break the other way), emission
is not floored to whole rao, stored bonds are not quantised to u16, and the commit-reveal
mask is left to the chain that feeds it (only revealed weights are given here). `trust` and
`rank`, which subtensor no longer stores, are computed by their former definitions for
display. With Yuma 3 and liquid alpha, a bond whose weight is now 0 resets to 0, as in
subtensor's sparse path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from verification.yuma_math import (
    Mask,
    Matrix,
    Vector,
    alpha_sigmoid,
    col_max_upscale,
    col_normalize,
    normalize,
    row_normalize,
    topk_nonzero,
    weighted_median_col,
)

U16 = 65535.0
Blocks = NDArray[np.int64]


@dataclass(frozen=True, kw_only=True, slots=True)
class EpochInputs:
    stake: Vector
    """Per uid, the hotkey's stake (any unit; normalised here)."""
    weights: Matrix
    """weights[i][j]: what validator uid i set for uid j (any scale; rows are normalised)."""
    bonds: Matrix
    """The previous epoch's bonds, proportions in [0, 1]."""
    validator_permit: Mask
    """The previous epoch's permits."""
    last_update: Blocks
    """Per uid, the block its weights were last set at."""
    block_at_registration: Blocks
    current_block: int
    tempo: int = 360
    activity_cutoff: int = 5000
    kappa: float = 32767 / U16
    bonds_moving_average: int = 900_000
    """Per million: the weight of the old bonds in the moving average."""
    bonds_penalty: float = 1.0
    max_allowed_validators: int = 64
    owner_uid: int | None = None
    last_epoch_block: int | None = None
    """The block of the last epoch (bonds of uids registered since then are dropped); default
    `current_block - tempo`."""
    yuma3: bool = True
    liquid_alpha: bool = False
    alpha_low: float = 45875 / U16
    alpha_high: float = 58982 / U16
    alpha_sigmoid_steepness: float = 1000.0
    emission: float = 1.0
    """What this epoch distributes."""

    @property
    def n(self) -> int:
        return int(self.stake.shape[0])


@dataclass(frozen=True, slots=True)
class EpochResult:
    active: Mask
    stake: Vector
    new_validator_permit: Mask
    consensus: Vector
    validator_trust: Vector
    trust: Vector
    rank: Vector
    incentive: Vector
    dividends: Vector
    bonds: Matrix
    server_emission: Vector
    validator_emission: Vector
    emission: Vector
    """Per uid, its share of the epoch's emission (server + validator)."""


def epoch(x: EpochInputs) -> EpochResult:
    n = x.n
    uids = np.arange(n)
    last_update = np.asarray(x.last_update, dtype=np.int64)
    registered = np.asarray(x.block_at_registration, dtype=np.int64)
    active = ~(last_update + x.activity_cutoff < x.current_block)
    stake = normalize(np.asarray(x.stake, dtype=np.float64))
    permits = np.asarray(x.validator_permit, dtype=bool).copy()
    new_permits = topk_nonzero(stake, x.max_allowed_validators)
    if x.owner_uid is not None:
        permits[x.owner_uid] = new_permits[x.owner_uid] = True
    active_stake = normalize(np.where(active & permits, stake, 0.0))

    w = np.asarray(x.weights, dtype=np.float64).copy()
    w[~permits, :] = 0.0
    diagonal = uids if x.owner_uid is None else uids[uids != x.owner_uid]
    w[diagonal, diagonal] = 0.0
    w[last_update[:, None] <= registered[None, :]] = 0.0  # set before the target registered
    w = row_normalize(w)

    consensus = weighted_median_col(active_stake, w, x.kappa)
    clipped = np.minimum(w, consensus[None, :])
    validator_trust = clipped.sum(axis=1)
    ranks = clipped.T @ active_stake
    preranks = w.T @ active_stake
    trust = np.divide(ranks, preranks, out=np.zeros(n), where=preranks != 0)
    incentive = normalize(ranks)

    wb = w + x.bonds_penalty * (clipped - w)
    last_tempo = x.current_block - x.tempo if x.last_epoch_block is None else x.last_epoch_block + 1
    old = np.asarray(x.bonds, dtype=np.float64).copy()
    old[:, last_tempo <= registered] = 0.0
    if x.yuma3:
        ema, dividends = _yuma3_bonds(x, wb, old, consensus, incentive, active_stake)
        stored = ema
    else:
        a = 1.0 - x.bonds_moving_average / 1e6
        delta = col_normalize(wb * active_stake[:, None])
        ema = col_normalize(a * delta + (1.0 - a) * col_normalize(old))
        dividends = normalize(ema @ incentive)
        stored = col_max_upscale(ema)
    bonds = np.where(new_permits[:, None], stored, np.where(permits[:, None], 0.0, x.bonds))

    combined = incentive + dividends
    total = float(combined.sum())
    if total != 0:
        server, validator, combined = incentive / total, dividends / total, combined / total
    else:
        fallback = active_stake if float(active_stake.sum()) != 0 else stake
        server, validator, combined = incentive, fallback, fallback
    return EpochResult(
        active=active,
        stake=stake,
        new_validator_permit=new_permits,
        consensus=consensus,
        validator_trust=validator_trust,
        trust=trust,
        rank=incentive,
        incentive=incentive,
        dividends=dividends,
        bonds=bonds,
        server_emission=server * x.emission,
        validator_emission=validator * x.emission,
        emission=combined * x.emission,
    )


def _yuma3_bonds(
    x: EpochInputs,
    wb: Matrix,
    old: Matrix,
    consensus: Vector,
    incentive: Vector,
    active_stake: Vector,
) -> tuple[Matrix, Vector]:
    """(new bonds, dividends) by Yuma 3: bonds move towards the bond weights by alpha."""
    if x.liquid_alpha and bool((consensus != 0).any()):
        alpha = alpha_sigmoid(
            consensus, wb, old,
            low=x.alpha_low, high=x.alpha_high, steepness=x.alpha_sigmoid_steepness,
        )  # fmt: skip
        ema = np.where(wb > 0, np.minimum(1.0, (1 - alpha) * old + alpha * wb), 0.0)
    else:
        a = 1.0 - x.bonds_moving_average / 1e6
        ema = a * wb + (1.0 - a) * old
    dividends = normalize((col_normalize(ema) @ incentive) * active_stake)
    return ema, dividends
