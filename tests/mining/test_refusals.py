"""A miner refuses what it must, with the right code and a counter, and keeps serving.

The test node plays the orchestrator and, on the routes it issues here, also stages 0 and 2
around the miner under test (stage 1), so it can send activations and gradients by hand.
"""

import asyncio
import hashlib
from pathlib import Path

import aiohttp
import pytest
import torch

from node.node_service import NodeService
from p2p.admission import PeerSession
from p2p.messages import (
    Ack,
    Activation,
    Assign,
    Gradient,
    Message,
    WindowClose,
    Work,
)
from p2p.refusals import Reason, Refused
from p2p.tensors import TensorPayload
from store import BlobStore
from tests.mining.conftest import StartNode
from tests.mining.kit import (
    SPEC,
    Orchestrator,
    Reference,
    endpoint,
    state_of,
    tensor,
    wait_admitted,
    wait_for,
)

DIM = SPEC.model_config().dim
SHAPE = (SPEC.batch_size, SPEC.seq_len, DIM)


async def test_refusals_are_coded_counted_and_survived(
    start_node: StartNode, hotkeys, dataset, data_cache: Path, tmp_path: Path
) -> None:
    orch_node = await start_node("orch", ["orchestrator"], hotkey=hotkeys[0])
    common = {"miner.threads": 1, "miner.data_cache": str(data_cache)}
    a = await start_node(
        "a",
        ["miner"],
        orch_node.p2p_addrs,
        hotkey=hotkeys[1],
        **{**common, "miner.max_inflight": 2},
    )
    b = await start_node("b", ["miner"], orch_node.p2p_addrs, hotkey=hotkeys[2], **common)
    await wait_admitted([orch_node, a, b], 2)
    orch = Orchestrator(orch_node)
    me, miner = orch.ep.peer_id, endpoint(a).peer_id
    route_miners = [me, miner, me]

    # stage 1 starts from a checkpoint the orchestrator serves
    engine = Reference.build(SPEC).engines[1]
    engine.save(tmp_path / "stage1.safetensors")
    data = (tmp_path / "stage1.safetensors").read_bytes()
    assert orch_node.store is not None and a.store is not None
    digest = BlobStore(orch_node.store).put(data)
    assert isinstance(await orch.assign(a, 1, digest), Ack)
    holding = state_of(a).holding
    assert holding is not None and holding.weights == digest
    assert BlobStore(a.store).get(digest) == data
    assert isinstance(await orch.assign(b, -1), Ack)
    assert state_of(b).holding is None and state_of(b).assigned is not None

    activations: list[Activation] = []
    gradients: list[Gradient] = []

    async def on_activation(msg: Activation, peer: PeerSession) -> Message:
        activations.append(msg)
        return Ack()

    async def on_gradient(msg: Gradient, peer: PeerSession) -> Message:
        gradients.append(msg)
        return Ack()

    orch.ep.register(Activation, on_activation)
    orch.ep.register(Gradient, on_gradient)
    counts = endpoint(a).refusals.counts

    async def refused(sender: NodeService, msg: Message, reason: Reason) -> None:
        before = counts[reason.value]
        with pytest.raises(Refused) as err:
            await endpoint(sender).request(miner, msg, timeout=10)
        assert err.value.reason is reason, err.value
        assert counts[reason.value] == before + 1

    def activation(work: Work, t: torch.Tensor, **changes: object) -> Activation:
        fields: dict[str, object] = {
            "window": work.window,
            "batch": work.batch,
            "stage": 1,
            "route": work.route,
            "ticket": work.ticket,
            "tensor": TensorPayload.from_torch(t),
        }
        fields.update(changes)
        return Activation(**fields)  # type: ignore[arg-type]

    good = tensor(SHAPE)
    c = [orch.ticket(0, i, f"c{i}", route_miners) for i in range(4)]
    spec = SPEC.to_record()
    await refused(b, Assign(window=0, stage=0, spec=spec), Reason.NOT_ALLOWED)
    await refused(b, WindowClose(window=0), Reason.NOT_ALLOWED)
    await refused(orch_node, activation(c[0], tensor((2, 16, DIM // 2))), Reason.BAD_SHAPE)
    await refused(orch_node, activation(c[0], tensor(SHAPE, torch.float64)), Reason.BAD_DTYPE)
    await refused(orch_node, activation(c[0], good, stage=2), Reason.NOT_ASSIGNED)
    unknown = Gradient(
        **{**activation(c[3], good).meta(), "tensor": TensorPayload.from_torch(good)}
    )
    await refused(orch_node, unknown, Reason.UNKNOWN_BATCH)
    forged_work = Work(window=0, batch=0, route="c0", miners=route_miners)
    forged = activation(c[0], good, ticket=endpoint(b).statement(forged_work))
    await refused(orch_node, forged, Reason.BAD_TICKET)  # signed by a miner, not the orchestrator
    await refused(b, activation(c[0], good), Reason.BAD_TICKET)  # b is not the route's stage 0
    await refused(orch_node, activation(c[0], good, batch=1), Reason.BAD_TICKET)  # other batch
    elsewhere = orch.ticket(0, 0, "c0", [me, endpoint(b).peer_id, me])
    await refused(orch_node, activation(elsewhere, good), Reason.BAD_TICKET)  # names b
    later = orch.ticket(5, 0, "w5", route_miners)
    await refused(orch_node, activation(later, good), Reason.WRONG_WINDOW)

    # capacity: two batches wait for their gradients on stage 1; a third is refused
    for work in c[:2]:
        assert isinstance(await orch.ep.request(miner, activation(work, good)), Ack)
    await wait_for(lambda: len(activations) == 2, what="activations forwarded to stage 2")
    await refused(orch_node, activation(c[2], good), Reason.OVER_CAPACITY)
    duplicate = await orch.ep.request(miner, activation(c[0], good))  # a retry is acknowledged
    assert isinstance(duplicate, Ack) and len(state_of(a).batches) == 2
    for forwarded in activations:
        grad = Gradient(**{**forwarded.meta(), "stage": 1, "tensor": forwarded.tensor})
        assert isinstance(await orch.ep.request(miner, grad), Ack)
    await wait_for(lambda: len(gradients) == 2, what="gradients back to stage 0")
    assert {g.batch for g in gradients} == {0, 1} and all(g.stage == 0 for g in gradients)
    assert holding.engine.weights_version == 1  # accumulate = 2: one optimizer step

    # still serving: the third batch goes through now
    assert isinstance(await orch.ep.request(miner, activation(c[2], good)), Ack)
    await wait_for(lambda: len(activations) == 3, what="third activation")
    third = activations[2]
    grad = Gradient(**{**third.meta(), "stage": 1, "tensor": third.tensor})
    assert isinstance(await orch.ep.request(miner, grad), Ack)
    await wait_for(lambda: len(gradients) == 3, what="third gradient")

    # a window that does not end at an optimizer step is refused, and the stage rolls back
    with pytest.raises(Refused) as err:
        await orch.ep.request(miner, WindowClose(window=0), timeout=10)
    assert err.value.reason is Reason.WRONG_WINDOW and "optimizer step" in err.value.detail
    await wait_for(lambda: state_of(a).counters["rollbacks"] == 1, what="rollback")
    rolled = state_of(a).holding
    assert rolled is not None and rolled is not holding and state_of(a).window == 1
    assert rolled.engine.weights_version == 0 and rolled.weights == digest
    await refused(orch_node, activation(c[3], good), Reason.WRONG_WINDOW)

    # Assign: the same stage, checkpoint and window is a no-op; another window rebuilds the stage
    assert isinstance(await orch.assign(a, 1, digest, window=1), Ack)
    assert state_of(a).holding is rolled and state_of(a).counters["assign_repeated"] == 1
    assert isinstance(await orch.assign(a, 1, digest, window=2), Ack)
    assert state_of(a).holding is not rolled and state_of(a).window == 2
    other_data = Assign(window=2, stage=1, spec={**spec, "data_digest": "0" * 64}, weights=digest)
    await refused(orch_node, other_data, Reason.WRONG_RUN)
    await refused(orch_node, Assign(window=2, stage=3, spec=spec), Reason.MALFORMED)
    await refused(
        orch_node, Assign(window=2, stage=1, spec={**spec, "model": "?"}), Reason.MALFORMED
    )
    missing = Assign(window=2, stage=1, spec=spec, weights="1" * 64)
    await refused(orch_node, missing, Reason.NOT_FOUND)
    assert state_of(a).stage == 1  # a refused Assign leaves the stage as it was

    async with aiohttp.ClientSession() as session, session.get(f"{a.http_url}/status") as response:
        status = (await response.json())["miner"]
    for reason in ("bad_shape", "bad_dtype", "bad_ticket", "unknown_batch", "over_capacity"):
        assert status["refusals"][reason] >= 1
    assert status["refusals"]["bad_ticket"] == 4
    assert hashlib.sha256(data).hexdigest() == status["weights"]
    await asyncio.sleep(0)
