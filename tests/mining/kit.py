"""Test kit: the run spec, a hand-driven orchestrator over real miner nodes, and the reference."""

import asyncio
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from node.mining.state import MinerState
from node.node_service import NodeService
from node.roles.miner import MinerComponent
from node.roles.orchestrator import OrchestratorComponent
from p2p.admission import PeerSession
from p2p.endpoint import Endpoint
from p2p.messages import Ack, Assign, Message, Receipt, ReceiptBatch, Work
from p2p.statements import open_statement
from training.data.dataset import Dataset
from training.determinism import set_determinism
from training.engine import StageEngine
from training.local_trainer import run_micro_batch
from training.run_spec import RunSpec
from training.stages import StageModule, build_stages, split_layers

SPEC = RunSpec(
    model="tiny",
    vocab_size=512,
    n_stages=3,
    batch_size=2,
    seq_len=16,
    batches_per_window=4,
    accumulate=2,
    lr=1e-2,
    code_max_bytes=250_000,
    prose_max_bytes=120_000,
    math_documents=150,
)
RUN = "devnet"


def endpoint(node: NodeService) -> Endpoint:
    assert node.endpoint is not None
    return node.endpoint


def miner_of(node: NodeService) -> MinerComponent:
    return next(r for r in node._roles if isinstance(r, MinerComponent))


def orch_of(node: NodeService) -> OrchestratorComponent:
    return next(r for r in node._roles if isinstance(r, OrchestratorComponent))


def state_of(node: NodeService) -> MinerState:
    return miner_of(node).state


async def wait_admitted(nodes: list[NodeService], count: int) -> None:
    for _ in range(200):
        if all(len(endpoint(n).sessions) >= count for n in nodes):
            return
        await asyncio.sleep(0.1)
    raise AssertionError([len(endpoint(n).sessions) for n in nodes])


async def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Orchestrator:
    """The test side: signs tickets, sends Assign / Work / WindowClose, collects receipts."""

    node: NodeService
    spec: RunSpec = field(default_factory=lambda: SPEC)
    receipts: list[tuple[str, Receipt]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ep.register(ReceiptBatch, self._on_receipts)

    @property
    def ep(self) -> Endpoint:
        return endpoint(self.node)

    async def _on_receipts(self, msg: ReceiptBatch, peer: PeerSession) -> Message:
        for head in msg.receipts:
            receipt, _ = open_statement(head, Receipt, run=RUN, signer=peer.peer_id)
            self.receipts.append((peer.peer_id, receipt))
        return Ack()

    async def assign(
        self, miner: NodeService, stage: int, weights: str = "", window: int = 0
    ) -> Message:
        msg = Assign(window=window, stage=stage, spec=self.spec.to_record(), weights=weights)
        return await self.ep.request(endpoint(miner).peer_id, msg, timeout=60)

    def ticket(self, window: int, batch: int, route: str, miners: list[str]) -> Work:
        work = Work(window=window, batch=batch, route=route, miners=miners)
        return dataclasses.replace(work, ticket=self.ep.statement(work))

    async def work(self, window: int, batch: int, miners: list[str]) -> Work:
        work = self.ticket(window, batch, f"r{window}.{batch}", miners)
        await self.ep.request(miners[0], work, timeout=10)
        return work

    def of_batch(self, window: int, batch: int) -> dict[tuple[int, str], Receipt]:
        return {
            (r.stage, r.direction): r
            for _, r in self.receipts
            if (r.window, r.batch) == (window, batch)
        }


@dataclass
class Reference:
    """The same batches through a local chain of the stage engines (`run_micro_batch`)."""

    engines: list[StageEngine]
    losses: dict[tuple[int, int], float] = field(default_factory=dict)
    versions: dict[tuple[int, int], list[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, spec: RunSpec) -> "Reference":
        stages = build_stages(spec.model_config(), spec.n_stages, seed=spec.seed)
        return cls([StageEngine(s, spec.engine_config()) for s in stages])

    def run(self, spec: RunSpec, dataset: Dataset, batches: list[tuple[int, int]]) -> None:
        set_determinism(threads=1)  # the miners' compute threads run with miner.threads = 1
        for window, batch in batches:
            self.versions[window, batch] = [e.weights_digest() for e in self.engines]
            inputs, targets = dataset.batch(
                spec.data_seed, window, batch, batch_size=spec.batch_size, seq_len=spec.seq_len
            )
            self.losses[window, batch] = run_micro_batch(
                self.engines, (window, batch), inputs, targets
            )


def load_checkpoint(spec: RunSpec, stage: int, data: bytes, scratch: Path) -> StageEngine:
    model = spec.model_config()
    module = StageModule(model, split_layers(model.n_layers, spec.n_stages)[stage], seed=None)
    engine = StageEngine(module, spec.engine_config())
    path = scratch / f"stage{stage}.safetensors"
    path.write_bytes(data)
    engine.load(path)
    return engine


def tensor(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dtype)
