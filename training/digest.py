"""Content digests of tensors and named tensor sets (weights), stable across processes.

blake3 (as the p2p envelopes) over dtype, shape and raw bytes, in a fixed (sorted) name order.
"""

from __future__ import annotations

from collections.abc import Mapping

import blake3
import torch


def _update(hasher: blake3.blake3, tensor: torch.Tensor) -> None:
    t = tensor.detach().contiguous().cpu()
    hasher.update(f"{str(t.dtype).removeprefix('torch.')}|{tuple(t.shape)}|".encode())
    if t.numel():
        hasher.update(t.reshape(-1).view(torch.uint8).numpy().data)


def tensor_digest(tensor: torch.Tensor) -> str:
    """Hex blake3 digest of one tensor's dtype, shape and bytes."""
    hasher = blake3.blake3()
    _update(hasher, tensor)
    return hasher.hexdigest()


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """Hex blake3 digest of named tensors, in sorted name order."""
    hasher = blake3.blake3()
    for name in sorted(tensors):
        hasher.update(f"{name}\n".encode())
        _update(hasher, tensors[name])
    return hasher.hexdigest()
