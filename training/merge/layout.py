"""A stage's parameters as one flat float32 vector, in an order every member shares.

The merge exchanges parameters only: each member keeps its own AdamW state across the merge (as
DiLoCo's inner optimizers do), and the outer step's momentum, which every member holds alike,
travels in the merged checkpoint under `outer/<name>` (`OUTER_PREFIX`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

OUTER_PREFIX = "outer/"


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True, slots=True)
class Layout:
    entries: tuple[Entry, ...]

    @classmethod
    def of(cls, params: Iterable[tuple[str, tuple[int, ...]]]) -> Layout:
        """The layout of a stage whose parameters have these names and shapes (sorted by name)."""
        entries, offset = [], 0
        for name, shape in sorted((n, tuple(s)) for n, s in params):
            entries.append(Entry(name, shape, offset))
            offset += math.prod(shape)
        if not entries:
            raise ValueError("a stage without parameters")
        return cls(tuple(entries))

    @classmethod
    def of_tensors(cls, tensors: Mapping[str, torch.Tensor]) -> Layout:
        return cls.of((n, tuple(t.shape)) for n, t in tensors.items())

    @property
    def size(self) -> int:
        last = self.entries[-1]
        return last.offset + last.numel

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The vector of `tensors` (extra names are ignored; a missing or misshapen parameter is
        a ValueError)."""
        out = torch.empty(self.size, dtype=torch.float32)
        for e in self.entries:
            t = tensors.get(e.name)
            if t is None:
                raise ValueError(f"checkpoint lacks parameter {e.name}")
            if tuple(t.shape) != e.shape:
                raise ValueError(f"{e.name}: shape {tuple(t.shape)} != {e.shape}")
            out[e.offset : e.offset + e.numel] = t.detach().reshape(-1).to(torch.float32)
        return out

    def unflatten(self, vector: torch.Tensor, prefix: str = "") -> dict[str, torch.Tensor]:
        if vector.shape != (self.size,):
            raise ValueError(f"vector of {tuple(vector.shape)} for a layout of {self.size}")
        return {
            prefix + e.name: vector[e.offset : e.offset + e.numel].clone().reshape(e.shape)
            for e in self.entries
        }
