"""One determinism switch shared by miners and auditors, plus seeding and device helpers.

A replay is bitwise identical only on the same device kind with the same settings: the same
`set_determinism` call (seed, thread count), the same torch build, the same CPU/GPU model.
"""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch

_CUBLAS_WORKSPACE = ":4096:8"


def set_determinism(seed: int | None = None, *, threads: int | None = None) -> None:
    """Make torch deterministic process-wide; seed every generator when `seed` is given.

    `threads` fixes torch's intra-op thread count: CPU reductions may split differently with a
    different count, so miner and auditor must agree on it. Several processes sharing a few
    cores want threads=1: OpenMP's spinning threads slow down by 10x or more under contention.
    """
    # cuBLAS reads this when its handle is created, so it must be set before the first matmul.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", _CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.set_float32_matmul_precision("highest")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if seed is not None:
        seed_everything(seed)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(seed: int, *labels: object) -> int:
    """A 63-bit seed that depends only on `seed` and the labels (stable across processes)."""
    text = "|".join([str(seed), *(str(label) for label in labels)])
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(seed: int, *labels: object) -> torch.Generator:
    """A CPU generator seeded from `derive_seed(seed, *labels)`."""
    return torch.Generator(device="cpu").manual_seed(derive_seed(seed, *labels))


def device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
