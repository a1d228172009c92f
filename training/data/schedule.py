"""The deterministic data schedule: which packed sequences make up batch b of window w.

Pure functions of their arguments and the token streams. Randomness comes from sha256 of the
labels (not from a library generator whose stream might change between versions), so every node
rebuilds the same batch. Rows are split between domains by systematic sampling (one random
offset per batch), so each batch matches the mixture to within one row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping

import numpy as np
import torch
from numpy.typing import NDArray

Stream = NDArray[np.unsignedinteger]


def _u64(*labels: object) -> int:
    text = "|".join(["tessera-schedule/1", *(str(x) for x in labels)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def sequence_count(stream: Stream, seq_len: int) -> int:
    """Packed sequences of seq_len + 1 tokens (inputs plus shifted targets) in the stream."""
    return max(0, (len(stream) - 1) // seq_len)


def normalized_mixture(
    domains: list[str], mixture: Mapping[str, float] | None
) -> list[tuple[str, float]]:
    """(domain, cumulative weight) in sorted domain order, zero-weight domains dropped."""
    weights = dict.fromkeys(domains, 1.0) if mixture is None else dict(mixture)
    unknown = weights.keys() - set(domains)
    if unknown:
        raise ValueError(f"mixture names unknown domains {sorted(unknown)}; have {domains}")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"mixture weights must be >= 0 with a positive sum: {weights}")
    total = sum(weights.values())
    out, acc = [], 0.0
    for name in sorted(weights):
        if weights[name] > 0:
            acc += weights[name] / total
            out.append((name, acc))
    return out


def _sequence(stream: Stream, k: int, seq_len: int) -> Stream:
    return stream[k * seq_len : k * seq_len + seq_len + 1]


def _rows_to_tensors(rows: list[Stream]) -> tuple[torch.Tensor, torch.Tensor]:
    data = torch.from_numpy(np.stack(rows).astype(np.int64))
    return data[:, :-1].contiguous(), data[:, 1:].contiguous()


def batch_plan(
    streams: Mapping[str, Stream],
    seed: int,
    window: int,
    batch_index: int,
    *,
    batch_size: int,
    seq_len: int,
    mixture: Mapping[str, float] | None = None,
) -> list[tuple[str, int]]:
    """(domain, packed sequence index) of each row of the batch."""
    if batch_size < 1 or seq_len < 1:
        raise ValueError("batch_size and seq_len must be >= 1")
    cumulative = normalized_mixture(sorted(streams), mixture)
    offset = _u64(seed, window, batch_index, "offset") / 2**64
    plan = []
    for row in range(batch_size):
        point = (row + offset) / batch_size
        domain = next((d for d, c in cumulative if point < c), cumulative[-1][0])
        count = sequence_count(streams[domain], seq_len)
        if count == 0:
            raise ValueError(f"domain {domain!r} has fewer than {seq_len + 1} tokens")
        plan.append((domain, _u64(seed, window, batch_index, row) % count))
    return plan


def batch(
    streams: Mapping[str, Stream],
    seed: int,
    window: int,
    batch_index: int,
    *,
    batch_size: int,
    seq_len: int,
    mixture: Mapping[str, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, targets), each int64 of shape (batch_size, seq_len)."""
    plan = batch_plan(
        streams,
        seed,
        window,
        batch_index,
        batch_size=batch_size,
        seq_len=seq_len,
        mixture=mixture,
    )
    return _rows_to_tensors([_sequence(streams[d], k, seq_len) for d, k in plan])


def sequential_batches(
    stream: Stream, *, batch_size: int, seq_len: int, max_batches: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The stream's packed sequences in order (held-out evaluation); the last batch may be
    smaller."""
    count = sequence_count(stream, seq_len)
    for n, start in enumerate(range(0, count, batch_size)):
        if max_batches is not None and n >= max_batches:
            return
        ks = range(start, min(start + batch_size, count))
        yield _rows_to_tensors([_sequence(stream, k, seq_len) for k in ks])
