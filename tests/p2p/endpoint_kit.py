"""Test kit: endpoints with real hotkey bindings on a memory network, and refusal decoding."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from bittensor_wallet import Wallet

from p2p.admission import AdmissionPolicy, HotkeyAllowlist
from p2p.binding import HotkeyBinding
from p2p.endpoint import Endpoint
from p2p.envelope import Header, open_frame, seal
from p2p.identity import NodeKey
from p2p.memory_transport import MemoryNetwork, MemoryTransport
from p2p.messages import Hello, Refusal
from p2p.transport import Frame

RUN = "run-test"


def make_hotkey(path: Path, name: str):
    wallet = Wallet(name=name, hotkey="hk", path=str(path))
    wallet.create_new_coldkey(use_password=False, suppress=True, overwrite=True)
    wallet.create_new_hotkey(use_password=False, suppress=True, overwrite=True)
    return wallet.hotkey


@dataclass
class Node:
    key: NodeKey
    endpoint: Endpoint
    transport: MemoryTransport
    hotkey: str


def make_node(
    network: MemoryNetwork,
    hotkey,
    admission: AdmissionPolicy,
    *,
    roles=("miner",),
    authenticated: bool = True,
    binding_for: str | None = None,
    run: str = RUN,
    any_run: bool = False,
) -> Node:
    key = NodeKey.generate()
    binding = None
    if hotkey is not None:
        bound = HotkeyBinding.create(hotkey, binding_for or key.peer_id, ttl_s=3600)
        binding = bound.to_json()
    transport = network.transport(key.peer_id, authenticated=authenticated)
    hello = Hello(roles=list(roles), capacity=1.0, binding=binding, bulk_addr="127.0.0.1:9")
    endpoint = Endpoint(
        key, run, transport, admission=admission, hello=lambda: hello, any_run=any_run
    )
    return Node(key, endpoint, transport, hotkey.ss58_address if hotkey is not None else "")


def allow(*hotkeys) -> HotkeyAllowlist:
    return HotkeyAllowlist(h.ss58_address for h in hotkeys)


def refusal_reason(frame: Frame) -> str | None:
    """The reason of a refusal (always signed, so checked here); None for any other reply (those
    between admitted peers carry the pair's session tag, checked by the endpoint tests)."""
    from p2p.envelope import decode_head

    if decode_head(frame.head)[0].type_id != Refusal.type_id:
        return None
    header, body = open_frame(frame)
    return Refusal.decode(header, body).reason


def resign(frame: Frame, key: NodeKey, **changes: object) -> Frame:
    """Re-encode a frame's head with `changes`, signed by `key` (an attacker's or the sender's)."""
    from p2p.envelope import decode_head

    header, _, _ = decode_head(frame.head)
    return seal(key, dataclasses.replace(header, **changes), frame.body)  # type: ignore[arg-type]


__all__ = ["RUN", "Header", "Node", "allow", "make_hotkey", "make_node", "refusal_reason", "resign"]
