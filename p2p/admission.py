"""Admission: which peers may talk to this node, decided at Hello from their hotkey binding.

A policy is an interface so the chain's metagraph can stand behind it later; here an allowlist of
hotkeys (the devnet's) and an open policy that still requires a valid binding.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from p2p.binding import HotkeyBinding
from p2p.errors import BindingError
from p2p.refusals import Reason, Refused


class AdmissionPolicy(Protocol):
    def allows(self, hotkey: str | None, roles: list[str]) -> bool:
        """Whether a peer with this (verified) hotkey, or None for no binding, may join."""
        ...


class HotkeyAllowlist:
    """Admit peers whose binding names one of `hotkeys`; `unbound_roles` may join without one."""

    def __init__(self, hotkeys: Iterable[str], *, unbound_roles: Iterable[str] = ()) -> None:
        self.hotkeys = set(hotkeys)
        self._unbound_roles = set(unbound_roles)

    def allows(self, hotkey: str | None, roles: list[str]) -> bool:
        if hotkey is None:
            return bool(roles) and set(roles) <= self._unbound_roles
        return hotkey in self.hotkeys


class AnyBoundPeer:
    """Admit any peer with a valid binding, and unbound peers only in `unbound_roles`."""

    def __init__(self, *, unbound_roles: Iterable[str] = ()) -> None:
        self._unbound_roles = set(unbound_roles)

    def allows(self, hotkey: str | None, roles: list[str]) -> bool:
        return hotkey is not None or (bool(roles) and set(roles) <= self._unbound_roles)


@dataclass(frozen=True, slots=True)
class PeerSession:
    peer_id: str
    hotkey: str | None
    roles: tuple[str, ...]
    capacity: float
    bulk_addr: str
    admitted_at: float = field(default_factory=time.time)


def verify_hello_binding(
    binding: dict[str, object] | None, *, peer_id: str, run: str, now: float
) -> str | None:
    """The verified hotkey of a Hello's binding (None when absent); Refused when it is invalid."""
    if binding is None:
        return None
    try:
        parsed = HotkeyBinding.from_json(dict(binding))
        parsed.verify(peer_id=peer_id, run_id=run, now=now)
    except BindingError as exc:
        raise Refused(Reason.BAD_BINDING, str(exc)) from None
    return parsed.hotkey


@dataclass(kw_only=True, slots=True)
class AdmissionConfig:
    mode: str = "any-bound"
    """`allowlist`: only `hotkeys` may join; `any-bound`: any peer with a valid hotkey binding."""
    hotkeys: list[str] = field(default_factory=list)
    unbound_roles: list[str] = field(default_factory=list)
    """Roles a peer may hold without a hotkey binding (e.g. a self-hosted orchestrator)."""

    def __post_init__(self) -> None:
        if self.mode not in ("allowlist", "any-bound"):
            raise ValueError(
                f"admission.mode must be 'allowlist' or 'any-bound', got {self.mode!r}"
            )

    def build(self) -> AdmissionPolicy:
        if self.mode == "allowlist":
            return HotkeyAllowlist(self.hotkeys, unbound_roles=self.unbound_roles)
        return AnyBoundPeer(unbound_roles=self.unbound_roles)
