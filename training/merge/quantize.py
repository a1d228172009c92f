"""What a merge exchanges, in one of three formats, and error feedback for the lossy ones.

- `fp32`: the float32 values, exact (the reference mode).
- `bf16`: bfloat16, round to nearest even: relative error at most 2**-8 per element.
- `int8`: blocks of `BLOCK` values share one float32 scale (absmax / 127) and are rounded to
  int8: absolute error at most scale / 2 = absmax(block) / 254 per element.
The lossy formats carry the pseudo-gradient (the change since the window's start), never raw
weights, and each member keeps what rounding lost (`ErrorFeedback`) and adds it to its next
contribution, so no update is lost for good, only delayed.
"""

from __future__ import annotations

from typing import Literal

import torch

Format = Literal["fp32", "bf16", "int8"]
FORMATS: tuple[Format, ...] = ("fp32", "bf16", "int8")
BLOCK = 256


def encoded_size(fmt: Format, numel: int) -> int:
    if fmt == "fp32":
        return 4 * numel
    if fmt == "bf16":
        return 2 * numel
    return 4 * (-(-numel // BLOCK)) + numel


def encode(fmt: Format, values: torch.Tensor) -> bytes:
    v = values.detach().reshape(-1).to(torch.float32).contiguous()
    if fmt == "fp32":
        return v.numpy().tobytes()
    if fmt == "bf16":
        return v.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    if fmt != "int8":
        raise ValueError(f"unknown exchange format {fmt!r}")
    n = v.numel()
    padded = torch.zeros(-(-n // BLOCK) * BLOCK, dtype=torch.float32)
    padded[:n] = v
    blocks = padded.reshape(-1, BLOCK)
    scales = blocks.abs().amax(dim=1) / 127.0
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    q = torch.round(blocks / safe[:, None]).clamp(-127, 127).to(torch.int8).reshape(-1)[:n]
    return scales.numpy().tobytes() + q.numpy().tobytes()


def decode(fmt: Format, data: bytes, numel: int) -> torch.Tensor:
    if len(data) != encoded_size(fmt, numel):
        raise ValueError(f"{len(data)} bytes are not {numel} values in {fmt}")
    if numel == 0:
        return torch.empty(0, dtype=torch.float32)
    buf = bytearray(data)
    if fmt == "fp32":
        return torch.frombuffer(buf, dtype=torch.float32)
    if fmt == "bf16":
        return torch.frombuffer(buf, dtype=torch.int16).view(torch.bfloat16).to(torch.float32)
    nblocks = -(-numel // BLOCK)
    scales = torch.frombuffer(buf, dtype=torch.float32, count=nblocks)
    q = torch.frombuffer(buf, dtype=torch.int8, offset=4 * nblocks)
    values = torch.zeros(nblocks * BLOCK, dtype=torch.float32)
    values[:numel] = q.to(torch.float32)
    return (values.reshape(-1, BLOCK) * scales[:, None]).reshape(-1)[:numel]


def bound(fmt: Format, values: torch.Tensor) -> torch.Tensor:
    """The per-element error bound of `fmt` on `values` (0 for fp32)."""
    v = values.detach().reshape(-1).to(torch.float32)
    if fmt == "fp32":
        return torch.zeros_like(v)
    if fmt == "bf16":
        return v.abs() * 2.0**-8
    n = v.numel()
    padded = torch.zeros(-(-n // BLOCK) * BLOCK)
    padded[:n] = v.abs()
    absmax = padded.reshape(-1, BLOCK).amax(dim=1)
    return (absmax[:, None] / 254.0).expand(-1, BLOCK).reshape(-1)[:n] * (1 + 1e-6)


class ErrorFeedback:
    """One member's rounding residual for one stage, added to its next contribution."""

    def __init__(self) -> None:
        self.residual: torch.Tensor | None = None

    def encode(self, fmt: Format, delta: torch.Tensor) -> tuple[bytes, torch.Tensor]:
        """The encoded (delta + residual) and the values it decodes to; keeps the new residual."""
        if fmt == "fp32":
            return encode(fmt, delta), delta
        x = (
            delta
            if self.residual is None or self.residual.shape != delta.shape
            else (delta + self.residual)
        )
        data = encode(fmt, x)
        sent = decode(fmt, data, x.numel())
        self.residual = x - sent
        return data, sent
