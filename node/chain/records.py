"""What a chain client returns: the project's own frozen records, never an SDK's types, and the
chain errors every client maps its failures to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ChainFault(StrEnum):
    UNAVAILABLE = "chain_unavailable"
    NOT_REGISTERED = "not_registered"
    ALREADY_REGISTERED = "already_registered"
    RATE_LIMITED = "rate_limited"
    WEIGHTS_REJECTED = "weights_rejected"
    REVEAL_REJECTED = "reveal_rejected"
    SUBNET_FULL = "subnet_full"
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    BAD_NONCE = "bad_nonce"
    WRONG_SUBNET = "wrong_subnet"


class ChainError(Exception):
    """An extrinsic or query the chain refused or could not answer, with the chain's reason."""

    def __init__(self, fault: ChainFault, detail: str = "") -> None:
        super().__init__(f"{fault.value}: {detail}" if detail else fault.value)
        self.fault = fault
        self.detail = detail


@dataclass(frozen=True, kw_only=True, slots=True)
class Hyperparams:
    tempo: int = 360
    max_weight_limit: float = 1.0
    """The largest share one weight may take of a validator's normalised row."""
    min_allowed_weights: int = 1
    weights_rate_limit: int = 100
    """Blocks between two weight settings of one hotkey."""
    commit_reveal: bool = False
    reveal_period: int = 1
    """Epochs after its commit's epoch in which a commit is revealed."""
    activity_cutoff: int = 5000
    kappa: float = 32767 / 65535
    bonds_moving_avg: int = 900_000
    bonds_penalty: float = 1.0
    immunity_period: int = 5000
    max_allowed_uids: int = 256
    max_allowed_validators: int = 64
    emission_per_block: float = 1.0
    yuma3: bool = True
    liquid_alpha: bool = False
    mechanism_split: tuple[float, ...] = (1.0,)
    """The subnet's mechanisms (one per competition: a training run) and each one's share of
    the emission (subtensor's MechanismEmissionSplit); each has its own weights and bonds."""

    def __post_init__(self) -> None:
        split = tuple(float(v) for v in self.mechanism_split)
        object.__setattr__(self, "mechanism_split", split)
        if not split or any(not v >= 0 for v in split) or abs(sum(split) - 1.0) > 1e-6:
            raise ValueError("mechanism_split: one share per mechanism, >= 0, adding up to 1")
        if min(self.tempo, self.max_allowed_uids, self.max_allowed_validators) < 1:
            raise ValueError("tempo, max_allowed_uids and max_allowed_validators must be >= 1")
        if not 0 < self.max_weight_limit <= 1 or not 0 <= self.kappa <= 1:
            raise ValueError("max_weight_limit in (0, 1], kappa in [0, 1]")
        if min(self.weights_rate_limit, self.min_allowed_weights, self.reveal_period) < 0:
            raise ValueError("rate limit, min allowed weights and reveal period must be >= 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class Neuron:
    uid: int
    hotkey: str
    coldkey: str
    stake: float
    validator_permit: bool
    last_update: int
    block_at_registration: int
    incentive: float = 0.0
    dividends: float = 0.0
    trust: float = 0.0
    validator_trust: float = 0.0
    consensus: float = 0.0
    emission: float = 0.0
    """What the last epoch gave this uid."""
    endpoint: str = ""
    """The multiaddr the node served."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Metagraph:
    netuid: int
    block: int
    neurons: tuple[Neuron, ...]

    def uid_of(self, hotkey: str) -> int | None:
        return next((n.uid for n in self.neurons if n.hotkey == hotkey), None)
