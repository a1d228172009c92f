"""Operator-facing settings of the node's LMDB store (the `store.*` config keys)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(kw_only=True, slots=True)
class StoreConfig:
    """How the store's LMDB environment is opened and how long blobs are kept by default."""

    map_size_mib: int = 1024
    sync: bool = True
    max_readers: int = 126
    blob_retention_s: float = 86400.0

    def __post_init__(self) -> None:
        if isinstance(self.map_size_mib, bool) or not isinstance(self.map_size_mib, int):
            raise ValueError(f"store.map_size_mib must be an integer, got {self.map_size_mib!r}")
        if self.map_size_mib <= 0:
            raise ValueError(f"store.map_size_mib must be positive, got {self.map_size_mib}")
        if isinstance(self.max_readers, bool) or not isinstance(self.max_readers, int):
            raise ValueError(f"store.max_readers must be an integer, got {self.max_readers!r}")
        if self.max_readers <= 0:
            raise ValueError(f"store.max_readers must be positive, got {self.max_readers}")
        retention = self.blob_retention_s
        if not math.isfinite(retention) or retention <= 0:
            raise ValueError(
                f"store.blob_retention_s must be a positive number of seconds, got {retention!r}"
            )

    @property
    def map_size_bytes(self) -> int:
        """The LMDB map size in bytes."""
        return self.map_size_mib * 1024 * 1024
