"""What crosses a stage boundary: activations forward and their gradients backward, as the run
spec says (`RunSpec.wire`): float32, or int8 with a float32 scale per sequence and channel.

int8 payload: one int8 tensor of shape (batch, seq + 4, width): for each sequence its `seq` rows
of codes, then its `width` float32 scales (little-endian) as four rows of bytes. A value decodes
as its code times its scale, the largest |value| of its channel in its sequence / 127 (1.0 for
a channel of zeros, NaN for one holding a NaN or Inf, which the receiver refuses). A scale per
sequence rather than per message keeps the gradients of quiet sequences: with one scale per
channel for the whole message the small model at R = 16 ended 3.5 % above float32 in one process,
with one per sequence 0.9 % (docs/decisions.md). Encoding is deterministic (round half to
even), so a replay of the sender's computation re-encodes the same bytes and an audit compares
digests as for float32. The quantization is straight-through: the sender's backward takes the
gradient as if its output had crossed unchanged, the receiver computes on the decoded values.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch

from p2p.refusals import Reason, Refused
from p2p.tensors import TensorPayload

WIRE_DTYPES = ("float32", "int8")
_SCALE_ROWS = 4  # a float32 scale per sequence and channel: 4 bytes, 4 rows
_LEVELS = 127.0
assert sys.byteorder == "little", "int8 wire scales are little-endian float32"


@dataclass(frozen=True, slots=True)
class WireFormat:
    shape: tuple[int, int, int]
    """(batch, seq, width) of the float tensor that crosses the boundary."""
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in WIRE_DTYPES:
            raise ValueError(f"wire dtype {self.dtype!r}; known: {', '.join(WIRE_DTYPES)}")

    @property
    def payload_shape(self) -> tuple[int, ...]:
        batch, seq, width = self.shape
        return self.shape if self.dtype == "float32" else (batch, seq + _SCALE_ROWS, width)

    def encode(self, tensor: torch.Tensor) -> TensorPayload:
        """The payload for `tensor` (of `shape`; computed in any float dtype)."""
        t = tensor.detach().to(torch.float32)
        if self.dtype == "float32":
            return TensorPayload.from_torch(t)
        batch, _, width = self.shape
        absmax = t.abs().amax(dim=1, keepdim=True)  # (batch, 1, width)
        scales = torch.where(absmax > 0, absmax / _LEVELS, torch.ones_like(absmax))
        finite = torch.isfinite(t).all(dim=1, keepdim=True)
        scales = torch.where(finite, scales, torch.full_like(scales, math.nan))
        codes = torch.round(t / scales).clamp_(-_LEVELS, _LEVELS).to(torch.int8)
        scale_rows = scales.contiguous().view(torch.int8).reshape(batch, _SCALE_ROWS, width)
        return TensorPayload.from_torch(torch.cat([codes, scale_rows], dim=1))

    def decode(self, payload: TensorPayload) -> torch.Tensor:
        """The float32 tensor of `shape` a checked payload carries."""
        t = payload.to_torch()
        if self.dtype == "float32":
            return t
        codes = t[:, : self.shape[1]]
        return codes.to(torch.float32) * self._scales(t)

    def check(self, payload: TensorPayload) -> None:
        """Refuses a payload of another dtype or shape, or with a scale not finite and > 0."""
        if payload.dtype != self.dtype:
            raise Refused(Reason.BAD_DTYPE, f"{payload.dtype}, this run exchanges {self.dtype}")
        if tuple(payload.shape) != self.payload_shape:
            raise Refused(
                Reason.BAD_SHAPE, f"shape {tuple(payload.shape)}, expected {self.payload_shape}"
            )
        if self.dtype == "int8":
            scales = self._scales(payload.to_torch())
            if not bool((torch.isfinite(scales) & (scales > 0)).all()):
                raise Refused(Reason.NON_FINITE, "an int8 channel scale is not finite and > 0")

    def _scales(self, t: torch.Tensor) -> torch.Tensor:
        """(batch, 1, width) float32 scales of an int8 payload (copied: 4-byte aligned)."""
        rows = t[:, self.shape[1] :].clone()
        return rows.reshape(self.shape[0], 1, -1).view(torch.float32)
