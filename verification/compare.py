"""Tolerant comparison of a claimed tensor with the auditor's recomputation.

Used when a replay is not bitwise reproducible (another device kind, thread count or torch build):
the claimed output passes if its relative L2 error is small and its direction (cosine) agrees.
Both are computed in float64. The default thresholds come from measured honest replay noise (see
`verification.calibrate` and the numbers in `DEFAULT_TOLERANCE`'s comment); every fault kind the
tests fabricate lies orders of magnitude outside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from p2p.tensors import TensorPayload
from p2p.transport import Buffer


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Thresholds a claimed tensor must meet against the recomputed one."""

    max_rel_l2: float = 6e-5
    """|claimed - recomputed|_2 / |recomputed|_2 must not exceed this."""
    min_cosine: float = 1 - 2e-9
    """cos(claimed, recomputed) must be at least this."""
    max_rel_scalar: float = 1e-5
    """For one-element outputs (the last stage's loss), where the cosine says nothing."""

    def __post_init__(self) -> None:
        if not (self.max_rel_l2 >= 0 and self.max_rel_scalar >= 0 and -1 <= self.min_cosine <= 1):
            raise ValueError("max_rel_l2, max_rel_scalar must be >= 0, min_cosine in [-1, 1]")

    def accepts(self, comparison: Comparison) -> bool:
        c = comparison
        if not (c.shape_ok and c.finite):
            return False
        if c.numel == 1:
            return c.rel_l2 <= self.max_rel_scalar
        return c.rel_l2 <= self.max_rel_l2 and c.cosine >= self.min_cosine


# Calibrated for fp32 miners on CPU replayed with another thread count and in float64 (the
# stand-in for other hardware), against cheaters computing under bf16 autocast or adding noise
# of relative norm 1e-4 (tiny and small presets, 2-6 windows of 2-8 batches; docs/decisions.md,
# Pay rules). Two tiers: units before the window's first optimizer step run on the start
# checkpoint's exact weights (honest rel_l2 <= 4.6e-7, 1 - cos <= 1.3e-13: FRESH_TOLERANCE, 22x
# above it, 61x under bf16's least), later units carry the drift of the optimizer steps (honest
# rel_l2 <= 2.9e-5, 1 - cos <= 4.1e-10, the largest in window 0 from empty optimizer moments:
# DEFAULT_TOLERANCE, 2.1x / 4.9x above, 6x / 33x under bf16). Every window has fresh units. The
# loss (rel <= 3.9e-7 honest) cannot tell bf16 from fp32 (2.3e-7..5.5e-5); the tensors do. Far
# faults (lazy, random, stale, copycat) sit at rel_l2 >= 1e-2.
DEFAULT_TOLERANCE = Tolerance()
FRESH_TOLERANCE = Tolerance(max_rel_l2=1e-5, min_cosine=1 - 1e-10, max_rel_scalar=1e-5)
"""For units computed before the window's first optimizer step (the start checkpoint's weights,
which the replay holds bit for bit): only compute noise, no weight drift."""
WEIGHTS_TOLERANCE = Tolerance(max_rel_l2=3e-5, min_cosine=1 - 1e-9, max_rel_scalar=3e-5)
"""For a reported window-end checkpoint against the replayed weights (all tensors as one)."""


@dataclass(frozen=True, slots=True)
class Comparison:
    rel_l2: float
    cosine: float
    max_abs: float
    finite: bool
    """Whether the claimed tensor is free of NaN and Inf."""
    shape_ok: bool
    """Whether the claimed bytes have the recomputed tensor's size (when False, the rest is
    meaningless: rel_l2 is inf, cosine -1)."""
    numel: int = 0


MISSHAPEN = Comparison(math.inf, -1.0, math.inf, False, False)


def compare(claimed: torch.Tensor, recomputed: torch.Tensor) -> Comparison:
    """Relative L2 error, cosine similarity and largest absolute difference."""
    if claimed.shape != recomputed.shape:
        return MISSHAPEN
    a = claimed.detach().cpu().to(torch.float64).reshape(-1)
    b = recomputed.detach().cpu().to(torch.float64).reshape(-1)
    n = a.numel()
    if not bool(torch.isfinite(a).all()):
        return Comparison(math.inf, -1.0, math.inf, False, True, n)
    if n == 0:
        return Comparison(0.0, 1.0, 0.0, True, True, 0)
    diff = a - b
    norm_a, norm_b = float(a.norm()), float(b.norm())
    diff_norm = float(diff.norm())
    rel = diff_norm / norm_b if norm_b > 0 else (0.0 if diff_norm == 0 else math.inf)
    if norm_a > 0 and norm_b > 0:
        cosine = max(-1.0, min(1.0, float(a @ b) / (norm_a * norm_b)))
    else:
        cosine = 1.0 if norm_a == norm_b else 0.0
    return Comparison(rel, cosine, float(diff.abs().max()), True, True, n)


def combined(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> Comparison:
    """One comparison over several tensors taken as one vector (e.g. all of a stage's weights)."""
    if any(a.shape != b.shape for a, b in pairs):
        return MISSHAPEN
    if not pairs:
        return Comparison(0.0, 1.0, 0.0, True, True, 0)
    claimed = torch.cat([a.detach().cpu().to(torch.float64).reshape(-1) for a, _ in pairs])
    ref = torch.cat([b.detach().cpu().to(torch.float64).reshape(-1) for _, b in pairs])
    return compare(claimed, ref)


def from_wire(data: Buffer, like: torch.Tensor) -> torch.Tensor | None:
    """`data` (raw wire bytes) read with `like`'s dtype and shape; None if the size differs."""
    payload = TensorPayload.from_torch(like)
    if len(memoryview(data).cast("B")) != len(memoryview(payload.data)):
        return None
    return TensorPayload(payload.dtype, payload.shape, bytes(data)).to_torch()
