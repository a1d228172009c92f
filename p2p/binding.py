"""Binding of a node's libp2p peer id to a bittensor hotkey, signed by that hotkey.

The hotkey (sr25519 by default on the chain) signs `tessera-binding/1|<peer id>|<run id>|<expiry>`;
anyone can check the signature against the hotkey's SS58 address with the bittensor SDK's
`bittensor_core`, without the secret. An empty run id binds the peer for every run.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from p2p.errors import BindingError

_DOMAIN = "tessera-binding/1"


class HotkeySigner(Protocol):
    """What a bittensor hotkey keypair offers: an SS58 address and `sign`."""

    @property
    def ss58_address(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


def binding_message(peer_id: str, run_id: str, expires_at: int) -> bytes:
    return f"{_DOMAIN}|{peer_id}|{run_id}|{expires_at}".encode()


@dataclass(frozen=True, slots=True)
class HotkeyBinding:
    hotkey: str
    peer_id: str
    run_id: str
    expires_at: int
    signature: bytes

    @classmethod
    def create(
        cls,
        signer: HotkeySigner,
        peer_id: str,
        *,
        run_id: str = "",
        ttl_s: int,
        now: float | None = None,
    ) -> HotkeyBinding:
        expires_at = int((time.time() if now is None else now) + ttl_s)
        sig = signer.sign(binding_message(peer_id, run_id, expires_at))
        return cls(signer.ss58_address, peer_id, run_id, expires_at, bytes(sig))

    def verify(self, *, peer_id: str, run_id: str = "", now: float | None = None) -> None:
        """Raise BindingError unless this binding is valid for `peer_id` in `run_id` now."""
        from bittensor_core import Keypair  # the SDK's signature check; 2 ms import

        if self.peer_id != peer_id:
            raise BindingError(f"binding names peer {self.peer_id}, not {peer_id}")
        if self.run_id not in ("", run_id):
            raise BindingError(f"binding is for run {self.run_id!r}, not {run_id!r}")
        if (time.time() if now is None else now) >= self.expires_at:
            raise BindingError(f"binding expired at {self.expires_at}")
        message = binding_message(self.peer_id, self.run_id, self.expires_at)
        try:
            ok = Keypair(ss58_address=self.hotkey).verify(message, self.signature)
        except (ValueError, TypeError) as exc:
            raise BindingError(f"binding hotkey {self.hotkey!r} is not a valid address") from exc
        if not ok:
            raise BindingError("binding signature does not verify against its hotkey")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["signature"] = self.signature.hex()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HotkeyBinding:
        try:
            return cls(
                hotkey=str(data["hotkey"]),
                peer_id=str(data["peer_id"]),
                run_id=str(data["run_id"]),
                expires_at=int(data["expires_at"]),
                signature=bytes.fromhex(str(data["signature"])),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise BindingError(f"malformed binding: {exc!r}") from exc

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> HotkeyBinding:
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise BindingError(f"cannot read binding {path}: {exc}") from exc
