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

    max_rel_l2: float = 1e-3
    """|claimed - recomputed|_2 / |recomputed|_2 must not exceed this."""
    min_cosine: float = 0.999999
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


# Calibrated with `python -m verification.calibrate --windows 3` (tiny and small presets, 3
# stages, 3 windows of 8 batches with 4 optimizer steps each; fp32 on 1 thread replayed with 2
# threads and in float64: 576 honest units, 18 window-end checkpoints). Honest noise: tensors
# rel_l2 <= 2.9e-5, cosine >= 1 - 4.1e-10; loss rel <= 3.9e-7; weights rel_l2 <= 6.2e-6. Faults,
# nearest single unit: tensors rel_l2 >= 1.0e-2, cosine <= 1 - 5.1e-5 (stale), loss rel >= 2.7e-4
# (copycat), weights rel_l2 >= 2.5e-2 (stale); each faulty window has a unit with rel_l2 >= 0.13.
# Margins (above honest / below faults): rel 35x / 10x (130x per window), cosine 2400x / 51x,
# loss 25x / 27x, weights 48x / 83x.
DEFAULT_TOLERANCE = Tolerance()
WEIGHTS_TOLERANCE = Tolerance(max_rel_l2=3e-4, min_cosine=0.999999, max_rel_scalar=3e-4)
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
