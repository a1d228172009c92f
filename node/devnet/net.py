"""A devnet's nodes and their command lines: one orchestrator, validators and miners on loopback,
and with `chain` a devnet chain node that every other node registers on (validators staked at
genesis, setting weights every tempo).

`DevnetPlan` says what to run (how many nodes, which run to train, extra `--set`s); `Devnet`
creates the homes (key, test wallet, hotkey binding), starts the chain node (else the
orchestrator) first and everyone else bootstrapped to it, and stops them all. Tests drive single
nodes through `Devnet.node()`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.devnet.procs import DevnetNode, NodeSpec, fetch_statuses

RUN_FLAGS = (
    "model",
    "seed",
    "data_seed",
    "vocab_size",
    "batch_size",
    "seq_len",
    "batches_per_window",
    "accumulate",
    "lr",
    "compress",
)
"""`RunSpec` fields the devnet sets from its own flags (`n_stages` comes from `stages`)."""
DEVNET_MAP_MIB = 8192
DEVNET_LEASE_K = 8.0
"""Lease deadline = k x the stage's observed hop latency (the node default is 3)."""


def toml_inline(table: dict[str, Any]) -> str:
    """A flat dict as a TOML inline table."""
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items()) + "}"


def toml_value(value: Any) -> str:
    """A Python value as the TOML literal `--set` expects (strings quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


@dataclass(frozen=True, slots=True)
class Competition:
    """One of several training runs on the subnet: its run id, model preset and mechanism's
    share of the emission."""

    run_id: str
    model: str
    share: float


@dataclass(kw_only=True, slots=True)
class DevnetPlan:
    stages: int = 3
    miners: int | None = None
    """Miner nodes; None = two per stage (a stage's miners merge at each window end)."""
    validators: int = 1
    windows: int = 0
    """Windows to train; 0 = no run settings are passed (the nodes' defaults apply)."""
    run: dict[str, Any] = field(default_factory=dict)
    """`orchestrator.run.<key>` values (RunSpec fields) besides `n_stages`."""
    threads: int = 1
    """torch threads per miner."""
    data_cache: Path | None = None
    """Shared corpus/tokenizer cache; None = `<root>/data`."""
    sets: list[str] = field(default_factory=list)
    """Extra `KEY=VALUE` overrides applied to every node (after the devnet's own)."""
    faults: list[str] = field(default_factory=list)
    """Cheating miners: miner i runs `--fault faults[i]` (the rest are honest). With faults,
    the validators audit every miner of every window."""
    chain: bool = False
    """Run a devnet chain node (`--role chain`) for the subnet."""
    tempo: int = 20
    """The chain's blocks per Yuma epoch (and the validators' weights interval)."""
    block_time_s: float = 1.0
    runs: list[Competition] = field(default_factory=list)
    """Several runs at once (SN9-style competitions), each its own orchestrator, miners and
    validators on its own subnet mechanism; the validators of all runs share their hotkeys."""
    per_node: dict[str, list[str]] = field(default_factory=dict)
    """Extra `KEY=VALUE` overrides of single nodes by name (e.g. a miner's small store)."""

    def __post_init__(self) -> None:
        if len(self.faults) > self.miner_count:
            raise ValueError(f"{len(self.faults)} faults for {self.miner_count} miners")
        if self.runs and (not self.chain or abs(sum(r.share for r in self.runs) - 1) > 1e-6):
            raise ValueError("several runs need the chain, and shares adding up to 1")

    @property
    def miner_count(self) -> int:
        return 2 * self.stages if self.miners is None else self.miners

    def specs(self) -> list[NodeSpec]:
        if self.runs:
            return self._competition_specs()
        out = [NodeSpec(name="orchestrator", role="orchestrator")]
        out += [NodeSpec(name=f"validator{i}", role="validator") for i in range(self.validators)]
        faults = self.faults + [""] * (self.miner_count - len(self.faults))
        out += [NodeSpec(name=f"miner{i}", role="miner", fault=f) for i, f in enumerate(faults)]
        if self.chain:
            out.append(NodeSpec(name="chain", role="chain"))
        return out

    def _competition_specs(self) -> list[NodeSpec]:
        """Per run (orchestrator first), then the chain node: names prefixed by the run id."""
        out = []
        for r in self.runs:
            out.append(NodeSpec(name=f"{r.run_id}-orchestrator", role="orchestrator", run=r.run_id))
            out += [
                NodeSpec(
                    f"{r.run_id}-validator{i}", "validator", run=r.run_id, wallet=f"validator{i}"
                )
                for i in range(self.validators)
            ]
            out += [
                NodeSpec(f"{r.run_id}-miner{i}", "miner", run=r.run_id)
                for i in range(self.miner_count)
            ]
        return [*out, NodeSpec(name="chain", role="chain")]

    def run_sets(self, spec: NodeSpec, root: Path) -> list[str]:
        """A node's own run settings with several runs: its model (with a corpus cache per
        model: the tokenizer's vocabulary is the model's), and a validator's mechanism."""
        from training.presets import PRESETS  # torch: only when a devnet actually starts

        index = next((i for i, r in enumerate(self.runs) if r.run_id == spec.run), None)
        if index is None:
            return []
        model = self.runs[index].model
        cache = toml_value(str((self.data_cache or root / "data") / model))
        return [
            f"orchestrator.run.model={toml_value(model)}",
            f"orchestrator.run.vocab_size={PRESETS[model].vocab_size}",
            f"validator.mechanism={index}",
            *(f"{role}.data_cache={cache}" for role in ("orchestrator", "miner", "validator")),
        ]

    def chain_sets(self, spec: NodeSpec, root: Path, hotkeys: dict[str, str]) -> list[str]:
        """One node's chain settings: the chain node's genesis (the validators staked) and
        subnet, everyone else's link to it (registering and serving its own hotkey)."""
        if not self.chain:
            return []
        if spec.role == "chain":
            validators = {s.name for s in self.specs() if s.role == "validator"}
            stakes = {hotkeys[n]: 1000.0 for n in hotkeys if n in validators}
            params: dict[str, Any] = {"tempo": self.tempo, "weights_rate_limit": self.tempo // 2}
            if self.runs:
                params["mechanism_split"] = [r.share for r in self.runs]
            return [
                f"devnet_chain.block_time_s={self.block_time_s}",
                f"devnet_chain.stakes={toml_inline(stakes)}",
                f"devnet_chain.params={toml_inline(params)}",
            ]
        # One endpoint per hotkey: a validator sharing its hotkey serves it from the first run.
        serve = not (spec.wallet and self.runs and spec.run != self.runs[0].run_id)
        return [
            'chain.network="devnet"',
            "chain.register=true",
            f"chain.serve={toml_value(serve)}",
            f"chain.refresh_s={max(self.block_time_s * 2, 1.0)}",
            f"chain.wallet_name={toml_value(spec.wallet or spec.name)}",
            f"chain.wallet_path={toml_value(str(root / 'wallets'))}",
            f"validator.weights_interval={self.tempo}",
        ]

    def node_sets(self, root: Path) -> list[str]:
        """The `KEY=VALUE` overrides every node gets (the run is only read by the orchestrator,
        the miners learn it from the orchestrator's Assign)."""
        if not self.windows:
            return list(self.sets)
        cache = str(self.data_cache or root / "data")
        sets = [
            f"orchestrator.data_cache={toml_value(cache)}",
            f"miner.data_cache={toml_value(cache)}",
            f"miner.threads={self.threads}",
            f"validator.data_cache={toml_value(cache)}",
            f"validator.threads={self.threads}",  # exact replay needs the miners' threads
            f"orchestrator.windows={self.windows}",
            f"orchestrator.run.n_stages={self.stages}",
            # Every node of the devnet shares this machine's cores: a hop waits for the CPU as
            # much as for its queue, so leases get more slack than across separate machines.
            f"orchestrator.leases.k={DEVNET_LEASE_K}",
            # Every window has its auditors: with the chain a validator's permit comes with
            # the first epoch, and a tiny window passes in a second.
            f"orchestrator.wait_for_validators={self.validators}",
            # Each window leaves every miner's checkpoints before and after its stage's merge
            # with the orchestrator (about 40 MiB each for `small`); LMDB maps are sparse.
            f"store.map_size_mib={DEVNET_MAP_MIB}",
        ]
        sets += [f"orchestrator.run.{k}={toml_value(v)}" for k, v in self.run.items()]
        if self.faults:
            sets.append(f"validator.miners_per_window={self.miner_count}")
        return sets + list(self.sets)


class Devnet:
    def __init__(self, root: Path, plan: DevnetPlan, *, quiet: bool = False) -> None:
        self.root = root
        self.plan = plan
        self.nodes = [DevnetNode(spec, root, quiet=quiet) for spec in plan.specs()]

    @property
    def orchestrator(self) -> DevnetNode:
        return self.nodes[0]

    @property
    def miners(self) -> list[DevnetNode]:
        return [n for n in self.nodes if n.spec.role == "miner"]

    @property
    def validators(self) -> list[DevnetNode]:
        return [n for n in self.nodes if n.spec.role == "validator"]

    @property
    def chain(self) -> DevnetNode | None:
        return next((n for n in self.nodes if n.spec.role == "chain"), None)

    def node(self, name: str) -> DevnetNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def by_peer_id(self, peer_id: str) -> DevnetNode | None:
        return next((n for n in self.nodes if n.peer_id == peer_id), None)

    def node_args(self, node: DevnetNode, hotkeys: dict[str, str]) -> list[str]:
        """One node's `--set`s. With a chain, every node but the chain admits by the metagraph
        (registered hotkeys; validators with a permit) and always the chain node; without one
        (and the chain node itself) the devnet's hotkeys by allowlist."""
        chain = self.chain
        if chain is None or node is chain:
            mode, admitted = "allowlist", list(hotkeys.values())
        else:
            mode, admitted = "metagraph", [hotkeys[chain.name]]
        sets = [f'admission.mode="{mode}"', f"admission.hotkeys={json.dumps(admitted)}"]
        sets += self.plan.node_sets(self.root)
        sets += self.plan.run_sets(node.spec, self.root)
        sets += self.plan.chain_sets(node.spec, self.root, hotkeys)
        sets += self.plan.per_node.get(node.name, [])
        return [a for s in sets for a in ("--set", s)]

    async def start(self, *, timeout: float = 30.0) -> None:
        """Identities for every node, then the first node, then the others (in parallel)
        bootstrapped to it. The first is the chain node where there is one (the others find each
        other by the multiaddrs served on it), else the orchestrator.

        Raises RuntimeError when a node exits or is not ready in time (call `stop` anyway)."""
        self.root.mkdir(parents=True, exist_ok=True)
        hotkeys = {node.name: node.prepare_identity() for node in self.nodes}
        first = self.chain or self.orchestrator
        others = [n for n in self.nodes if n is not first]
        await first.start(bootstrap=[], extra_args=self.node_args(first, hotkeys), timeout=timeout)
        boot = first.endpoints["p2p"]
        try:
            async with asyncio.TaskGroup() as group:  # one failing cancels the others' waits
                for node in others:
                    args = self.node_args(node, hotkeys)
                    group.create_task(node.start(bootstrap=boot, extra_args=args, timeout=timeout))
        except ExceptionGroup as failed:
            raise RuntimeError("; ".join(str(e) for e in failed.exceptions)) from None

    async def statuses(self) -> dict[str, dict[str, Any] | None]:
        docs = await fetch_statuses(self.nodes)
        return {node.name: doc for node, doc in zip(self.nodes, docs, strict=True)}

    async def stop(self, timeout: float = 10.0) -> dict[str, int | None]:
        """SIGTERM to every node at once; returns each node's exit code."""
        codes = await asyncio.gather(*(node.stop(timeout=timeout) for node in self.nodes))
        return {node.name: code for node, code in zip(self.nodes, codes, strict=True)}
