"""`BittensorChain`: the `ChainClient` of a real subnet, through the bittensor 11 SDK's async
`Client`.

The SDK is imported on first use (in a worker thread: the import takes most of a second), never
at module import. The network is explicit, there is no mainnet default; `substrate` swaps the
SDK's chain backend (tests pass an in-memory fake). Weights go through the SDK's `SetWeights`,
which preflights registration and the rate limit, clips to the max weight, quantises to u16,
checks min_allowed_weights and commits timelocked (commit-reveal) when the subnet asks for it.
Extrinsics are signed by the hotkey, registration by the coldkey, which is unlocked off the event
loop. SDK failures become `ChainError`s; the records returned are the project's own.

The chain's axon slot holds an ip and a port, so `serve` publishes the multiaddr's `/ip*/…/tcp/…`
part (no peer id) and `Neuron.endpoint` reads it back as `/ip4/<ip>/tcp/<port>`.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from node.chain.records import ChainError, ChainFault, Hyperparams, Metagraph, Neuron

NETWORKS = ("finney", "test", "archive", "local")
"""The SDK's named networks this client accepts (or a ws:// / wss:// URL). The SDK's own "devnet"
name is left out: in this project "devnet" is the `--role chain` node (`DevnetChain`)."""

_U16_MAX = 65535
_FAULT_BY_NAME = {"HotKeyAlreadyRegisteredInSubNet": ChainFault.ALREADY_REGISTERED,
                  "NoNeuronIdAvailable": ChainFault.SUBNET_FULL}  # fmt: skip
_FAULT_BY_CODE = {"not_registered": ChainFault.NOT_REGISTERED,
                  "rate_limited": ChainFault.RATE_LIMITED,
                  "subnet_not_exists": ChainFault.WRONG_SUBNET}  # fmt: skip
"""The SDK's chain error name, else its `ErrorCode`, -> our fault (others: the call's fallback)."""
_HYPERPARAMS = {
    "tempo": "Tempo", "max_weight_limit": "MaxWeightsLimit", "kappa": "Kappa",
    "min_allowed_weights": "MinAllowedWeights", "weights_rate_limit": "WeightsSetRateLimit",
    "commit_reveal": "CommitRevealWeightsEnabled", "reveal_period": "RevealPeriodEpochs",
    "activity_cutoff": "ActivityCutoff", "immunity_period": "ImmunityPeriod",
    "bonds_moving_avg": "BondsMovingAverage", "bonds_penalty": "BondsPenalty",
    "max_allowed_uids": "MaxAllowedUids", "max_allowed_validators": "MaxAllowedValidators",
    "yuma3": "Yuma3On", "liquid_alpha": "LiquidAlphaOn",
}  # fmt: skip
"""`Hyperparams` field -> its SubtensorModule storage item; absent items keep the default."""
_U16_FRACTIONS = {"max_weight_limit", "kappa", "bonds_penalty"}
_FLAGS = {"commit_reveal", "yuma3", "liquid_alpha"}


@dataclass(frozen=True, slots=True)
class _Keys:
    """The wallet shape the SDK signs coldkey extrinsics with, keys already unlocked."""

    coldkey: Any
    coldkeypub: Any
    hotkey: Any


class BittensorChain:
    def __init__(self, keys: Any, *, network: str, substrate: object | None = None) -> None:
        """`keys`: a `bittensor_wallet.Wallet` (its hotkey signs; `register` also needs its
        coldkey) or a hotkey keypair alone. `network`: one of `NETWORKS` or a ws(s):// URL."""
        if network not in NETWORKS and not network.startswith(("ws://", "wss://")):
            raise ValueError(f"network: one of {NETWORKS} or a ws(s):// URL, not {network!r}")
        self._wallet = keys if hasattr(keys, "coldkeypub") else None
        self._hotkey: Any = keys.hotkey if self._wallet is not None else keys
        self._network = network
        self._substrate = substrate
        self._client: Any = None
        self._lock = asyncio.Lock()

    @property
    def hotkey(self) -> str:
        return str(self._hotkey.ss58_address)

    async def block(self) -> int:
        with _sdk_errors(ChainFault.UNAVAILABLE):
            return int(await (await self._sdk()).block())

    async def metagraph(self, netuid: int) -> Metagraph:
        with _sdk_errors(ChainFault.UNAVAILABLE):
            graph = await (await self._sdk()).subnets.metagraph(netuid, commitments=False)
        if graph is None:
            raise ChainError(ChainFault.WRONG_SUBNET, f"subnet {netuid} does not exist")
        return metagraph_from_sdk(graph)

    async def hyperparams(self, netuid: int) -> Hyperparams:
        names = list(_HYPERPARAMS.values())
        with _sdk_errors(ChainFault.UNAVAILABLE):
            view = await (await self._sdk()).at()  # one block for every read
            storage = _bt().storage.SubtensorModule
            reads = (view.query(getattr(storage, name), [netuid]) for name in names)
            values = await asyncio.gather(*reads)
        return hyperparams_from_storage(dict(zip(names, values, strict=True)))

    async def weights(self, netuid: int) -> dict[int, dict[int, int]]:
        with _sdk_errors(ChainFault.UNAVAILABLE):
            client = await self._sdk()
            rows = await client.query_map(_bt().storage.SubtensorModule.Weights, [netuid])
        return {int(v): {int(u): int(w) for u, w in row or ()} for v, row in rows}

    async def register(self, netuid: int) -> int:
        """Burned registration, paid (and signed) by the wallet's coldkey; the hotkey's uid."""
        if self._wallet is None:
            raise ChainError(ChainFault.MALFORMED, "registering needs a wallet with a coldkey")
        with _sdk_errors(ChainFault.MALFORMED):
            client = await self._sdk()
            if (uid := await self._uid(client, netuid)) is not None:
                raise ChainError(ChainFault.ALREADY_REGISTERED, f"{self.hotkey} is uid {uid}")
            keys = await asyncio.to_thread(self._unlock)
            intent = _bt().BurnedRegister(netuid=netuid, hotkey_ss58=self.hotkey)
            await self._execute(client, intent, keys)
            uid = await self._uid(client, netuid)
        if uid is None:
            raise ChainError(ChainFault.NOT_REGISTERED, "registered, yet the hotkey has no uid")
        return uid

    async def serve(self, netuid: int, endpoint: str) -> None:
        ip, port = axon_of(endpoint)
        with _sdk_errors(ChainFault.MALFORMED):
            client = await self._sdk()
            await self._execute(client, _bt().ServeAxon(netuid=netuid, ip=ip, port=port))

    async def set_weights(
        self, netuid: int, weights: Mapping[int, float], *, mechid: int = 0
    ) -> int:
        with _sdk_errors(ChainFault.WEIGHTS_REJECTED):
            client = await self._sdk()
            chosen = {int(uid): float(w) for uid, w in weights.items()}
            intent = _bt().SetWeights(netuid, weights=chosen, mechid=mechid)
            return await self._execute(client, intent)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with _sdk_errors(ChainFault.UNAVAILABLE):
                await client.close()

    async def _sdk(self) -> Any:
        """The connected SDK client, imported and connected on first use."""
        async with self._lock:
            if self._client is None:
                bt = await asyncio.to_thread(importlib.import_module, "bittensor")
                client = bt.Client(self._network, substrate=self._substrate)
                await client.connect()
                self._client = client
        return self._client

    async def _execute(self, client: Any, intent: Any, keys: Any = None) -> int:
        """Sign and submit `intent`; the block it was included at."""
        signer = self._hotkey if keys is None else keys
        result = await client.execute(intent, signer, retries=2, wait_for_finalization=False)
        result.raise_for_failure()
        height = (result.extrinsic_id or "").partition("-")[0]
        return int(height) if height.isdigit() else int(await client.block())

    async def _uid(self, client: Any, netuid: int) -> int | None:
        uid = await client.query(_bt().storage.SubtensorModule.Uids, [netuid, self.hotkey])
        return None if uid is None else int(uid)

    def _unlock(self) -> _Keys:
        """Read (and decrypt) the coldkey: blocking, so it runs in a worker thread."""
        wallet = self._wallet
        assert wallet is not None
        return _Keys(coldkey=wallet.coldkey, coldkeypub=wallet.coldkeypub, hotkey=self._hotkey)


def metagraph_from_sdk(graph: Any) -> Metagraph:
    """Our `Metagraph` from the SDK's (`bittensor.Metagraph` of `MetagraphNeuron`s)."""
    neurons = tuple(_neuron(n) for n in graph.neurons)
    return Metagraph(netuid=int(graph.netuid), block=int(graph.block), neurons=neurons)


def _neuron(n: Any) -> Neuron:
    """The SDK's metagraph has no validator trust: it keeps `Neuron`'s default, 0."""
    registered = int(n.block_at_registration)
    return Neuron(uid=int(n.uid), hotkey=str(n.hotkey), coldkey=str(n.coldkey),
                  stake=float(n.total_stake.amount), validator_permit=bool(n.validator_permit),
                  last_update=int(n.last_update), block_at_registration=registered,
                  incentive=float(n.incentive), dividends=float(n.dividends), trust=float(n.trust),
                  consensus=float(n.consensus), emission=float(n.emission.amount),
                  endpoint=multiaddr_of(n.axon))  # fmt: skip


def hyperparams_from_storage(raw: Mapping[str, Any]) -> Hyperparams:
    """`Hyperparams` from raw SubtensorModule storage values (u16 fractions made 0..1)."""
    fields: dict[str, Any] = {}
    for field, item in _HYPERPARAMS.items():
        if (value := raw.get(item)) is not None:
            cast = bool if field in _FLAGS else int
            fields[field] = int(value) / _U16_MAX if field in _U16_FRACTIONS else cast(value)
    try:
        return Hyperparams(**fields)
    except ValueError as exc:
        raise ChainError(ChainFault.MALFORMED, f"chain hyperparameters: {exc}") from exc


def axon_of(endpoint: str) -> tuple[str, int]:
    """The ip and port of a multiaddr (`/ip4/<ip>/tcp/<port>[/p2p/…]`) or of `ip:port`."""
    parts = endpoint.split("/")
    if endpoint.startswith("/") and len(parts) >= 5 and parts[1] in ("ip4", "ip6"):
        host, port = (parts[2], parts[4]) if parts[3] == "tcp" else ("", "")
    else:
        host, _, port = endpoint.rpartition(":")
    try:
        ip, number = ipaddress.ip_address(host.strip("[]")), int(port)
    except ValueError:
        raise ChainError(ChainFault.MALFORMED, f"not an ip/tcp endpoint: {endpoint!r}") from None
    if not 0 < number < 65536:
        raise ChainError(ChainFault.MALFORMED, f"port out of range: {endpoint!r}")
    return str(ip), number


def multiaddr_of(axon: str | None) -> str:
    """The SDK's served axon (`ip:port`, `[ipv6]:port`, None) as a multiaddr; "" if none."""
    if not axon:
        return ""
    host, _, port = axon.rpartition(":")
    ip = ipaddress.ip_address(host.strip("[]"))
    return f"/ip{ip.version}/{ip}/tcp/{int(port)}"


def _bt() -> Any:
    """The bittensor module, which `_sdk()` has imported by the time this is called."""
    return sys.modules["bittensor"]


@contextmanager
def _sdk_errors(fallback: ChainFault) -> Iterator[None]:
    """Raise SDK failures as `ChainError`: unreachable chain -> UNAVAILABLE; a chain error by
    its name or code (not registered, rate limited, …), else `fallback` with the reason."""
    try:
        yield
    except Exception as exc:
        error = _chain_error(exc, fallback)
        if error is None:
            raise
        raise error from exc


def _chain_error(exc: Exception, fallback: ChainFault) -> ChainError | None:
    if isinstance(exc, OSError):  # ConnectionError, TimeoutError
        return ChainError(ChainFault.UNAVAILABLE, str(exc) or type(exc).__name__)
    bt = sys.modules.get("bittensor")
    if bt is None or isinstance(exc, ChainError):
        return None
    if isinstance(exc, bt.RpcConnectionError | bt.ConnectionNotReady):
        return ChainError(ChainFault.UNAVAILABLE, str(exc))
    if isinstance(exc, bt.ChainError):
        name = exc.name or ""
        fault = _FAULT_BY_NAME.get(name) or _FAULT_BY_CODE.get(exc.code.value) or fallback
        return ChainError(fault, f"{name}: {exc.message}" if name else exc.message)
    if isinstance(exc, bt.BittensorError):  # refused before submitting (e.g. all-zero weights)
        return ChainError(fallback, str(exc))
    return None
