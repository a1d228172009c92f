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
    blob_share: float = 0.5
    """The share of the map blobs may take: beyond it every role's GC evicts the unpinned blobs
    kept longest first, so records (receipts, verdicts, history) always find room."""

    def __post_init__(self) -> None:
        if not 0 < self.blob_share <= 0.9:
            raise ValueError(f"store.blob_share must be in (0, 0.9], got {self.blob_share!r}")
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

    @property
    def blob_budget_bytes(self) -> int:
        """Bytes the blobs may take (`blob_share` of the map)."""
        return int(self.map_size_bytes * self.blob_share)
