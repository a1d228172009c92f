"""Test kit: the `[chain]` settings of a node linked to a devnet chain node."""

from pathlib import Path
from typing import Any


def link_settings(wallets: Path, name: str, netuid: int) -> dict[str, Any]:
    """A node registering and serving on subnet `netuid`, signing with wallet `name` ("hk")."""
    return {
        "chain.network": "devnet", "chain.netuid": netuid, "chain.register": True,
        "chain.serve": True, "chain.refresh_s": 0.2, "chain.wallet_name": name,
        "chain.wallet_hotkey": "hk", "chain.wallet_path": str(wallets),
    }  # fmt: skip
