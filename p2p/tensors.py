"""Tensor payloads as raw bytes with dtype and shape: checks, and conversion to and from torch.

The p2p layer never pickles or msgpacks tensors: a payload is its contiguous bytes plus the dtype
name and shape carried in the signed head. torch is imported only when a tensor is built from
or turned into one; the NaN/Inf check reads the bytes with numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from p2p.refusals import Reason, Refused
from p2p.transport import Buffer

if TYPE_CHECKING:
    import torch

ITEMSIZE = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float64": 8,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
}
FLOAT_DTYPES = frozenset({"float32", "float16", "bfloat16", "float64"})
_NUMPY_FLOATS = {"float32": "<f4", "float16": "<f2", "float64": "<f8"}
_BF16_EXPONENT = 0x7F80


@dataclass(frozen=True, slots=True)
class TensorPayload:
    dtype: str
    shape: tuple[int, ...]
    data: Buffer
    encoding: str | None = None
    """None: `data` is the tensor's bytes; "deflate": they are deflated (`p2p.body_codec`)."""

    def __post_init__(self) -> None:
        data = self.data
        if isinstance(data, memoryview) and (data.format != "B" or data.ndim != 1):
            object.__setattr__(self, "data", data.cast("B"))  # byte-sized len(), digestible

    @classmethod
    def from_torch(cls, tensor: torch.Tensor) -> TensorPayload:
        import torch

        t = tensor.detach().contiguous().cpu()
        name = str(t.dtype).removeprefix("torch.")
        if name not in ITEMSIZE:
            raise Refused(Reason.BAD_DTYPE, f"unsupported dtype {name}")
        raw = t.view(torch.uint8) if t.numel() else t
        return cls(name, tuple(t.shape), raw.numpy().data.cast("B"))

    def to_torch(self) -> torch.Tensor:
        import torch

        if self.encoding is not None:
            raise ValueError(f"a {self.encoding} payload has no tensor view; inflate it first")
        dtype = getattr(torch, self.dtype)
        if len(self.data) == 0:
            return torch.empty(self.shape, dtype=dtype)
        writable = isinstance(self.data, memoryview) and not self.data.readonly
        buffer = self.data if writable else bytearray(self.data)
        return torch.frombuffer(buffer, dtype=dtype).reshape(self.shape)


def check_spec(
    dtype: str | None,
    shape: tuple[int, ...] | None,
    body_len: int,
    *,
    dtypes: frozenset[str],
    max_rank: int,
) -> None:
    """Refuse a head whose dtype/shape is not allowed or does not describe `body_len` bytes."""
    if dtype is None or shape is None:
        if dtype is not None or shape is not None:
            raise Refused(Reason.BAD_SHAPE, "dtype and shape go together")
        if dtypes:
            raise Refused(Reason.BAD_DTYPE, "a tensor payload is required")
        return
    if dtype not in dtypes:
        raise Refused(Reason.BAD_DTYPE, f"dtype {dtype} not allowed here")
    if len(shape) > max_rank:
        raise Refused(Reason.BAD_SHAPE, f"rank {len(shape)} exceeds {max_rank}")
    if math.prod(shape) * ITEMSIZE[dtype] != body_len:
        raise Refused(Reason.BAD_SHAPE, f"shape {shape} of {dtype} is not {body_len} bytes")


def check_finite(payload: TensorPayload) -> None:
    """Refuse NON_FINITE a float payload with a NaN or an Inf anywhere.

    numpy, not torch: this runs on the event loop, where a torch reduction starts an OpenMP
    team with the process's default thread count, whose threads then spin against the compute
    threads sharing the cores (this line held 37 % of a miner's event-loop samples). A NaN or
    an Inf anywhere makes the sum NaN or Inf, and one pass summing costs a tenth of an
    elementwise isfinite; a non-finite sum of finite values (an overflow) is told apart by the
    exact check, which only such sums pay. bfloat16, which numpy lacks, is checked by its bits
    (all eight exponent bits set).
    """
    if payload.dtype not in FLOAT_DTYPES or not payload.data:
        return
    if payload.dtype == "bfloat16":
        bits = np.frombuffer(payload.data, dtype="<u2")
        if not np.any((bits & _BF16_EXPONENT) == _BF16_EXPONENT):
            return
    else:
        values = np.frombuffer(payload.data, dtype=_NUMPY_FLOATS[payload.dtype])
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(values.sum()) or np.isfinite(values).all():
                return
    raise Refused(Reason.NON_FINITE, "tensor contains NaN or Inf")
