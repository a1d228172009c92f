"""The miner deflates what it sends on where that saves bytes, on its compute thread."""

from functools import partial
from typing import cast

import torch

from node.mining.compute import StepResult
from node.mining.pipeline import _if_current
from node.mining.state import MinerState, StageHolding
from p2p.body_codec import inflate
from p2p.tensors import TensorPayload


def _job(send: TensorPayload | None) -> StepResult:
    return StepResult((), send, {"compute": 1.0, "serialise": 0.5})


def test_int8_codes_go_deflated_and_floats_and_stale_jobs_as_they_are() -> None:
    holding = cast(StageHolding, object())
    state = MinerState(peer_id="p", run_id="r", holding=holding)
    codes = torch.randint(-20, 21, (4, 36, 18), dtype=torch.int8)
    raw = TensorPayload.from_torch(codes)
    result = _if_current(state, holding, partial(_job, raw))
    assert result is not None and result.send is not None
    sent = result.send
    assert sent.encoding == "deflate" and len(sent.data) < len(raw.data)
    assert inflate(sent.dtype, sent.shape, sent.data, "deflate") == bytes(raw.data)
    assert result.seconds["compute"] == 1.0 and result.seconds["serialise"] > 0.5

    floats = TensorPayload.from_torch(torch.zeros(4, 36, 18))
    result = _if_current(state, holding, partial(_job, floats))
    assert result is not None and result.send is floats
    result = _if_current(state, holding, partial(_job, None))
    assert result is not None and result.send is None

    state.holding = cast(StageHolding, object())  # the stage was replaced: the job is skipped
    assert _if_current(state, holding, partial(_job, raw)) is None
