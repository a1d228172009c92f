"""The boundary wire format (`training.wire`): float32 as is, or int8 codes with a float32 scale
per sequence and channel; deterministic bytes, bounded error, refusals with reason codes."""

import math
import struct

import pytest
import torch

from p2p.refusals import Reason, Refused
from p2p.tensors import TensorPayload
from training.run_spec import RunSpec
from training.wire import WireFormat

SHAPE = (2, 5, 3)


def sample() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(SHAPE, generator=g) * torch.tensor([1.0, 1e-4, 30.0])  # channels differ
    t[..., 0].view(-1)[3] = 7.5  # an outlier in channel 0 only
    return t


def test_float32_passes_the_tensor_through() -> None:
    wire = WireFormat(shape=SHAPE)
    t = sample()
    payload = wire.encode(t)
    assert payload.dtype == "float32" and payload.shape == SHAPE
    assert torch.equal(wire.decode(payload), t)


def test_int8_codes_each_value_within_half_its_step() -> None:
    wire = WireFormat(shape=SHAPE, dtype="int8")
    t = sample()
    payload = wire.encode(t)
    assert payload.dtype == "int8" and payload.shape == (2, 5 + 4, 3)
    assert len(payload.data) == 2 * 5 * 3 + 2 * 4 * 3  # codes, then 4 bytes per scale
    back = wire.decode(payload)
    assert back.shape == SHAPE and back.dtype == torch.float32
    # A step per sequence and channel: the small channel and the sequence without the outlier
    # keep their precision.
    step = t.abs().amax(dim=1, keepdim=True) / 127
    assert bool(((back - t).abs() <= step / 2 * (1 + 1e-6)).all())
    assert float((back - t)[1, :, 0].abs().max()) < 7.5 / 127 / 4  # the outlier is in sequence 0
    assert bytes(wire.encode(t).data) == bytes(payload.data)  # deterministic


def test_int8_zero_channel_and_all_zero_tensor() -> None:
    wire = WireFormat(shape=SHAPE, dtype="int8")
    t = sample()
    t[..., 1] = 0.0
    assert torch.equal(wire.decode(wire.encode(t))[..., 1], torch.zeros(2, 5))
    zeros = torch.zeros(SHAPE)
    assert torch.equal(wire.decode(wire.encode(zeros)), zeros)


def test_check_refuses_with_reason_codes() -> None:
    wire = WireFormat(shape=SHAPE, dtype="int8")
    good = wire.encode(sample())
    wire.check(good)
    with pytest.raises(Refused) as e:
        wire.check(TensorPayload.from_torch(sample()))
    assert e.value.reason is Reason.BAD_DTYPE
    with pytest.raises(Refused) as e:
        wire.check(TensorPayload("int8", (2, 5, 3), bytes(good.data)[: 2 * 5 * 3]))
    assert e.value.reason is Reason.BAD_SHAPE
    for bad in (math.nan, math.inf, 0.0, -1.0):
        raw = bytearray(good.data)
        struct.pack_into("<f", raw, 5 * 3 + 4, bad)  # sequence 0, channel 1's scale
        with pytest.raises(Refused) as e:
            wire.check(TensorPayload("int8", good.shape, bytes(raw)))
        assert e.value.reason is Reason.NON_FINITE, bad
    nan = sample()
    nan.view(-1)[0] = math.nan  # what a NaN in a sender's output becomes: a NaN scale
    with pytest.raises(Refused) as e:
        wire.check(wire.encode(nan))
    assert e.value.reason is Reason.NON_FINITE


def test_the_run_spec_names_the_wire_format() -> None:
    spec = RunSpec(model="tiny", vocab_size=512, batch_size=2, seq_len=8, compress=4, wire="int8")
    assert spec.wire_format() == WireFormat(shape=(2, 8, 16), dtype="int8")
    assert RunSpec.from_record(spec.to_record()) == spec
    with pytest.raises(ValueError, match="wire"):
        RunSpec(wire="float16")
