"""Admission: which peers may talk to this node, decided at Hello from their hotkey binding.

A policy is an interface: an allowlist of hotkeys (the devnet's), an open policy that still
requires a valid binding, and the subnet's metagraph (`RegisteredHotkeys`, kept current by the
node's chain link): a registered hotkey, and for the validator role a validator permit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from p2p.binding import HotkeyBinding
from p2p.errors import BindingError
from p2p.refusals import Reason, Refused
from p2p.session_keys import SessionKeys


class AdmissionPolicy(Protocol):
    def allows(self, hotkey: str | None, roles: list[str]) -> bool:
        """Whether a peer with this (verified) hotkey, or None for no binding, may join."""
        ...

    def refusal(self, hotkey: str | None, roles: list[str]) -> Refused:
        """Why such a peer may not join (when `allows` says no)."""
        ...


def _not_allowed(hotkey: str | None, roles: list[str]) -> Refused:
    return Refused(Reason.NOT_ALLOWED, f"hotkey {hotkey} with roles {roles} not admitted")


class HotkeyAllowlist:
    """Admit peers whose binding names one of `hotkeys`; `unbound_roles` may join without one."""

    def __init__(self, hotkeys: Iterable[str], *, unbound_roles: Iterable[str] = ()) -> None:
        self.hotkeys = set(hotkeys)
        self._unbound_roles = set(unbound_roles)

    def allows(self, hotkey: str | None, roles: list[str]) -> bool:
        if hotkey is None:
            return bool(roles) and set(roles) <= self._unbound_roles
        return hotkey in self.hotkeys

    def refusal(self, hotkey: str | None, roles: list[str]) -> Refused:
        return _not_allowed(hotkey, roles)


class AnyBoundPeer:
    """Admit any peer with a valid binding, and unbound peers only in `unbound_roles`."""

    def __init__(self, *, unbound_roles: Iterable[str] = ()) -> None:
        self._unbound_roles = set(unbound_roles)

    def allows(self, hotkey: str | None, roles: list[str]) -> bool:
        return hotkey is not None or (bool(roles) and set(roles) <= self._unbound_roles)

    def refusal(self, hotkey: str | None, roles: list[str]) -> Refused:
        return _not_allowed(hotkey, roles)


class RegisteredHotkeys:
    """Admit peers whose bound hotkey is registered on the subnet (the validator role also needs a
    validator permit), `hotkeys` always (e.g. the devnet chain node's) and `unbound_roles`
    without a binding. The node's chain link replaces the registered sets after each metagraph
    read; until the first one, only `hotkeys` and `unbound_roles` get in."""

    def __init__(self, hotkeys: Iterable[str], *, unbound_roles: Iterable[str] = ()) -> None:
        self.always = set(hotkeys)
        self._unbound_roles = set(unbound_roles)
        self.registered: frozenset[str] = frozenset()
        self.permitted: frozenset[str] = frozenset()

    def update(self, registered: Iterable[str], permitted: Iterable[str]) -> None:
        self.registered, self.permitted = frozenset(registered), frozenset(permitted)

    def allows(self, hotkey: str | None, roles: list[str]) -> bool:
        if hotkey is None:
            return bool(roles) and set(roles) <= self._unbound_roles
        if hotkey in self.always:
            return True
        return hotkey in self.registered and ("validator" not in roles or hotkey in self.permitted)

    def refusal(self, hotkey: str | None, roles: list[str]) -> Refused:
        if hotkey is not None and hotkey not in self.registered:
            return Refused(
                Reason.NOT_REGISTERED, f"hotkey {hotkey} is not registered on the subnet"
            )
        if hotkey is not None and "validator" in roles:
            return Refused(Reason.NOT_ALLOWED, f"validator {hotkey} has no validator permit")
        return _not_allowed(hotkey, roles)


@dataclass(frozen=True, slots=True)
class PeerSession:
    peer_id: str
    hotkey: str | None
    roles: tuple[str, ...]
    capacity: float
    bulk_addr: str
    admitted_at: float = field(default_factory=time.time)
    keys: SessionKeys | None = None
    """The pair's session keys (None: the peer announced none; its frames are signed)."""


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
    """`allowlist`: only `hotkeys` may join; `any-bound`: any peer with a valid hotkey binding;
    `metagraph`: hotkeys registered on the subnet of `[chain]` (validators with a permit), and
    `hotkeys` always."""
    hotkeys: list[str] = field(default_factory=list)
    unbound_roles: list[str] = field(default_factory=list)
    """Roles a peer may hold without a hotkey binding (e.g. a self-hosted orchestrator)."""

    def __post_init__(self) -> None:
        if self.mode not in ("allowlist", "any-bound", "metagraph"):
            raise ValueError(
                f"admission.mode must be 'allowlist', 'any-bound' or 'metagraph', got {self.mode!r}"
            )

    def build(self) -> AdmissionPolicy:
        if self.mode == "allowlist":
            return HotkeyAllowlist(self.hotkeys, unbound_roles=self.unbound_roles)
        if self.mode == "metagraph":
            return RegisteredHotkeys(self.hotkeys, unbound_roles=self.unbound_roles)
        return AnyBoundPeer(unbound_roles=self.unbound_roles)
