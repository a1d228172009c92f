"""The vector and matrix pieces of a Yuma consensus epoch (`verification.yuma`), in float64.

Each follows the function of subtensor's `pallets/subtensor/src/epoch/math.rs` it is named after
(read at commit 14bc6f9f): a normalisation whose sum is zero leaves its input unchanged, row and
column normalisers skip zero rows and columns.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Vector = NDArray[np.float64]
Matrix = NDArray[np.float64]
Mask = NDArray[np.bool_]


def normalize(v: Vector) -> Vector:
    """`inplace_normalize`: v / sum(v), or v itself when the sum is 0."""
    total = float(v.sum())
    return v / total if total != 0 else v.copy()


def row_normalize(m: Matrix) -> Matrix:
    sums = m.sum(axis=1, keepdims=True)
    return np.asarray(np.divide(m, sums, out=np.zeros_like(m), where=sums != 0), np.float64)


def col_normalize(m: Matrix) -> Matrix:
    sums = m.sum(axis=0, keepdims=True)
    return np.asarray(np.divide(m, sums, out=np.zeros_like(m), where=sums != 0), np.float64)


def col_max_upscale(m: Matrix) -> Matrix:
    """`inplace_col_max_upscale`: each column divided by its maximum (zero columns stay)."""
    top = m.max(axis=0, keepdims=True) if m.size else m
    return np.divide(m, top, out=np.zeros_like(m), where=top != 0)


def topk_nonzero(v: Vector, k: int) -> Mask:
    """`is_topk_nonzero`: the k largest non-zero entries; on ties the lower uids drop first."""
    keep: Mask = np.asarray(v != 0, dtype=np.bool_)
    if v.size < k:
        return keep
    order = np.argsort(v, kind="stable")  # ascending; equal values keep uid order
    keep[order[: v.size - k]] = False
    return keep


def weighted_median_col(stake: Vector, scores: Matrix, kappa: float) -> Vector:
    """`weighted_median_col_sparse`: per column, the stake-weighted median of the rows'
    scores at `kappa` among rows with stake > 0 (renormalised): the smallest score x whose
    rows at or below it hold more than `1 - kappa` of the stake, i.e. the largest value that
    validators holding at least `kappa` of the stake put at or above. Rows that give a column
    no weight vote 0 for it; with no staked row every consensus is 0."""
    staked = stake > 0
    n_cols = scores.shape[1]
    if not staked.any():
        return np.zeros(n_cols)
    use = stake[staked] / stake[staked].sum()
    minority = float(use.sum()) - kappa
    s = scores[staked]
    order = np.argsort(s, axis=0, kind="stable")
    sorted_scores = np.take_along_axis(s, order, axis=0)
    cumulative = np.cumsum(use[order], axis=0)
    above = cumulative > minority
    first = np.where(above.any(axis=0), above.argmax(axis=0), s.shape[0] - 1)
    return np.asarray(sorted_scores[first, np.arange(n_cols)], dtype=np.float64)


def alpha_sigmoid(
    consensus: Vector,
    weights: Matrix,
    bonds: Matrix,
    *,
    low: float,
    high: float,
    steepness: float,
) -> Matrix:
    """Liquid alpha per bond (`alpha_sigmoid`): a sigmoid from `low` to `high` in the distance
    of the weight above consensus (when it rises) or below the bond (when it falls)."""
    diff = np.where(
        weights >= bonds,
        np.clip(weights - consensus[None, :], 0.0, 1.0),
        np.clip(bonds - weights, 0.0, 1.0),
    )
    x = np.clip(-(steepness / 100.0) * (diff - 0.5), -20.0, 20.0)
    return np.asarray(np.clip(low + (high - low) / (1.0 + np.exp(x)), low, high))
