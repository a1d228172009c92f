"""Reducing one partition from its members' contributions, and the DiLoCo outer step.

Every reduction accumulates in float64 over the contributions in member order and rounds once to
float32, so two owners given the same contributions produce the same bytes. Weights are the
members' validated work (they need not sum to 1; a weight of 0 drops the member).

- `mean`: the weighted mean.
- `trimmed`: per coordinate, drop the `trim` lowest and highest values, then the weighted mean
  of the rest (a poisoned contribution cannot pull a coordinate past the honest values).
- `clip`: centered clipping (Karimireddy et al. 2021): start from the coordinate-wise median and
  move by the weighted mean of each contribution's deviation clipped to L2 norm `tau`.
The outer step (DiLoCo): the averaged pseudo-gradient Δ = start - mean is applied with Nesterov
momentum: m ← μ·m + Δ; new = start - lr·(Δ + μ·m).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

Robust = Literal["mean", "trimmed", "clip"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Reduction:
    robust: Robust = "mean"
    trim: int = 1
    """`trimmed`: values dropped at each end per coordinate."""
    tau: float = 1.0
    """`clip`: the L2 radius of each contribution's deviation."""
    clip_iters: int = 3

    def __post_init__(self) -> None:
        if self.robust not in ("mean", "trimmed", "clip"):
            raise ValueError(f"unknown robust reduction {self.robust!r}")
        if self.trim < 0 or self.tau <= 0 or self.clip_iters < 1:
            raise ValueError("trim must be >= 0, tau > 0, clip_iters >= 1")


def _weights(weights: Sequence[float], n: int) -> torch.Tensor:
    if len(weights) != n or n == 0:
        raise ValueError(f"{len(weights)} weights for {n} contributions")
    w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0: {list(weights)}")
    return w


def weighted_mean(contribs: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    w = _weights(weights, len(contribs))
    total = torch.zeros_like(contribs[0], dtype=torch.float64)
    for c, wi in zip(contribs, w.tolist(), strict=True):
        if wi:
            total += c.to(torch.float64) * wi
    return (total / float(w.sum())).to(torch.float32)


def trimmed_mean(
    contribs: Sequence[torch.Tensor], weights: Sequence[float], trim: int
) -> torch.Tensor:
    w = _weights(weights, len(contribs))
    keep = [i for i, wi in enumerate(w.tolist()) if wi > 0]
    if len(keep) <= 2 * trim:
        return weighted_mean(contribs, weights)
    stacked = torch.stack([contribs[i].to(torch.float64) for i in keep])
    ww = w[keep]
    order = stacked.argsort(dim=0, stable=True)
    middle = order[trim : len(keep) - trim]
    values = stacked.gather(0, middle)
    wsel = ww[middle]
    return ((values * wsel).sum(0) / wsel.sum(0)).to(torch.float32)


def centered_clip(
    contribs: Sequence[torch.Tensor], weights: Sequence[float], tau: float, iters: int
) -> torch.Tensor:
    w = _weights(weights, len(contribs))
    keep = [i for i, wi in enumerate(w.tolist()) if wi > 0]
    stacked = torch.stack([contribs[i].to(torch.float64) for i in keep])
    ww = (w[keep] / w[keep].sum()).reshape(-1, *([1] * (stacked.dim() - 1)))
    v = stacked.median(dim=0).values
    for _ in range(iters):
        dev = stacked - v
        norms = dev.reshape(len(keep), -1).norm(dim=1).clamp_min(1e-30)
        scale = (tau / norms).clamp(max=1.0).reshape(-1, *([1] * (stacked.dim() - 1)))
        v = v + (ww * dev * scale).sum(0)
    return v.to(torch.float32)


def reduce(
    contribs: Sequence[torch.Tensor], weights: Sequence[float], how: Reduction
) -> torch.Tensor:
    if not contribs:
        raise ValueError("nothing to reduce")
    if any(c.shape != contribs[0].shape for c in contribs):
        raise ValueError("contributions of different shapes")
    if how.robust == "trimmed":
        return trimmed_mean(contribs, weights, how.trim)
    if how.robust == "clip":
        return centered_clip(contribs, weights, how.tau, how.clip_iters)
    return weighted_mean(contribs, weights)


def outer_step(
    start: torch.Tensor, mean: torch.Tensor, momentum: torch.Tensor, *, lr: float, mu: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(new parameters, new momentum) of one Nesterov outer step (float64 inside)."""
    s, m = start.to(torch.float64), momentum.to(torch.float64)
    delta = s - mean.to(torch.float64)
    m = mu * m + delta
    new = s - lr * (delta + mu * m)
    return new.to(torch.float32), m.to(torch.float32)
