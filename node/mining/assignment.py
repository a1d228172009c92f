"""Taking a stage: the Assign handler, and building the stage's engine off the event loop.

An orchestrator (a peer whose admitted roles include "orchestrator") sends the run's spec, the
stage to hold (-1: stand by) and the checkpoint blob to start from ("" = the spec's seed). The
miner loads or builds the dataset (checking its digest against the spec's), builds its stage,
loads the checkpoint (from its own blob store, else fetched from the orchestrator and kept) and
answers Ack once ready. Re-sending what the miner already holds (same spec, stage, checkpoint
and window: what a restarted orchestrator does) is answered at once and keeps the stage's state;
anything else replaces the stage, so the miner's state is always the checkpoint the orchestrator
names, trained on within the window it names. Assigns are handled one at a time.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from node.blob_server import fetch_blob
from node.daemon_thread import in_daemon_thread
from node.mining.state import STANDBY, MinerState, StageHolding
from p2p.admission import PeerSession
from p2p.endpoint import Endpoint
from p2p.errors import P2PError
from p2p.messages import Ack, Assign, Message
from p2p.refusals import Reason, Refused
from store import BlobStore
from training.data.build import build_dataset
from training.data.dataset import DataConfig, Dataset
from training.engine import StageEngine
from training.run_spec import RunSpec
from training.stages import StageModule, split_layers

log = logging.getLogger(__name__)
FETCH_TIMEOUT_S = 120.0
_HEX = frozenset("0123456789abcdef")


class DataMismatch(ValueError):
    """The dataset built here is not the run's."""


class Assigner:
    def __init__(
        self,
        state: MinerState,
        endpoint: Endpoint,
        blobs: BlobStore,
        *,
        data_cache: Path,
        scratch: Path,
        device: str | None,
        cache_size: int,
        checkpoint_retention_s: float,
    ) -> None:
        self._state = state
        self._endpoint = endpoint
        self._blobs = blobs
        self._data_cache = data_cache
        self._scratch = scratch
        self._device = device
        self._cache_size = cache_size
        self._keep_s = checkpoint_retention_s
        self._lock = asyncio.Lock()
        self._dataset: tuple[DataConfig, Dataset] | None = None
        endpoint.register(Assign, self.on_assign)

    async def on_assign(self, msg: Assign, peer: PeerSession) -> Message:
        if "orchestrator" not in peer.roles:
            raise Refused(Reason.NOT_ALLOWED, "only an orchestrator assigns stages")
        try:
            spec = RunSpec.from_record(dict(msg.spec))
        except (ValueError, TypeError) as exc:
            raise Refused(Reason.MALFORMED, f"run spec: {exc}") from None
        if not STANDBY <= msg.stage < spec.n_stages or msg.window < 0:
            raise Refused(Reason.MALFORMED, f"stage {msg.stage} / window {msg.window} invalid")
        if msg.weights and (len(msg.weights) != 64 or not set(msg.weights) <= _HEX):
            raise Refused(Reason.MALFORMED, f"weights {msg.weights!r} is not a sha256 hex digest")
        state = self._state
        async with self._lock:
            if self._holds(msg):
                state.orchestrator = peer.peer_id
                if msg.stage == STANDBY:
                    state.window = msg.window
                state.counters["assign_repeated"] += 1
                return Ack()
            holding = None
            if msg.stage != STANDBY:
                holding = await self.build(spec, msg.stage, msg.weights, peer.peer_id)
            state.orchestrator = peer.peer_id
            state.install(holding, msg.window)
            state.assigned = (dict(msg.spec), msg.stage, msg.weights)
            state.counters["assigned"] += 1
            log.info(
                "holding stage %s of run %s (weights %s)",
                msg.stage,
                state.run_id,
                msg.weights[:12] or "seed",
            )
        return Ack()

    def _holds(self, msg: Assign) -> bool:
        state = self._state
        if state.assigned is None or state.assigned[0] != msg.spec:
            return False
        if msg.stage == STANDBY:
            return state.assigned[1] == STANDBY
        holding = state.holding
        return (
            holding is not None
            and holding.stage == msg.stage
            and holding.weights == msg.weights
            and state.window == msg.window
        )

    async def rollback(self, holding: StageHolding, window: int) -> None:
        """Rebuild `holding`'s stage from the checkpoint it started the window from (after the
        window could not close) and move on to `window`. The caller has already withdrawn
        `holding`, so no work is taken meanwhile; an Assign that lands first wins."""
        state = self._state
        async with self._lock:
            if state.holding is not None or state.orchestrator is None:
                return
            try:
                rebuilt = await self.build(
                    holding.spec, holding.stage, holding.weights, state.orchestrator
                )
            except Refused as exc:
                state.counters["rollback_failed"] += 1
                log.error("stage %s could not be rebuilt: %s", holding.stage, exc)
                state.install(None, window)
                state.assigned = None
                return
            if state.holding is None:
                state.install(rebuilt, window)
                state.counters["rollbacks"] += 1

    async def build(self, spec: RunSpec, stage: int, weights: str, source: str) -> StageHolding:
        """The stage's holding; Refused with the reason to answer when it cannot be built."""
        checkpoint = await self._checkpoint(weights, source) if weights else None
        try:
            return await in_daemon_thread(
                self._build_sync, spec, stage, weights, checkpoint, name="build-stage"
            )
        except DataMismatch as exc:
            raise Refused(Reason.WRONG_RUN, str(exc)) from None
        except (ValueError, RuntimeError, OSError, SafetensorError) as exc:
            log.warning("cannot build stage %s: %r", stage, exc)
            raise Refused(Reason.MALFORMED, f"cannot build stage {stage}: {exc}") from None

    async def _checkpoint(self, digest: str, source: str) -> bytes:
        data = self._blobs.get(digest)
        if data is not None:
            return data
        try:
            data = await fetch_blob(self._endpoint, source, digest, timeout=FETCH_TIMEOUT_S)
        except Refused as exc:
            raise Refused(Reason.NOT_FOUND, f"weights {digest}: {exc}") from None
        except (P2PError, TimeoutError, OSError) as exc:
            raise Refused(Reason.NOT_FOUND, f"weights {digest} not fetched: {exc}") from None
        await asyncio.to_thread(self._blobs.put, data, retain_s=self._keep_s)
        return data

    def _build_sync(
        self, spec: RunSpec, stage: int, weights: str, checkpoint: bytes | None
    ) -> StageHolding:
        dataset = self._load_dataset(spec)
        if spec.data_digest and spec.data_digest != dataset.digest:
            raise DataMismatch(
                f"the dataset built under {self._data_cache} has digest {dataset.digest}, "
                f"the run's is {spec.data_digest}"
            )
        if spec.vocab_size < dataset.vocab_size:
            raise ValueError(f"vocab {spec.vocab_size} < the tokenizer's {dataset.vocab_size}")
        model = spec.model_config()
        stage_spec = split_layers(model.n_layers, spec.n_stages)[stage]
        module = StageModule(model, stage_spec, seed=spec.seed if checkpoint is None else None)
        config = spec.engine_config(device=self._device, cache_size=self._cache_size)
        engine = StageEngine(module, config)
        if checkpoint is not None:
            self._scratch.mkdir(parents=True, exist_ok=True)
            path = self._scratch / f"assign-{stage}.safetensors"
            try:
                path.write_bytes(checkpoint)
                engine.load(path)
            finally:
                path.unlink(missing_ok=True)
        record: dict[str, Any] = spec.to_record()
        return StageHolding(spec, record, stage, weights, engine, dataset)

    def _load_dataset(self, spec: RunSpec) -> Dataset:
        config = spec.data_config(self._data_cache)
        if self._dataset is not None and self._dataset[0] == config:
            return self._dataset[1]
        dataset = build_dataset(config)
        self._dataset = (config, dataset)
        return dataset
