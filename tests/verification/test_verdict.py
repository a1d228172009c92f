"""Verdicts: canonical encoding for signing, strict decoding, and the judging rules (exact vs
tolerant, inconclusive paths) on real replays, including real cross-thread replay noise."""

from dataclasses import replace

import msgpack
import pytest
import torch

from p2p.envelope import digest
from tests.verification.kit import SPEC, WindowRun
from training.data.dataset import Dataset
from training.determinism import set_determinism
from training.run_spec import RunSpec
from verification.calibrate import pipeline
from verification.replay import ReplayResult, Unit, replay
from verification.verdict import SIGNING_DOMAIN, Outcome, Reason, Verdict, judge

VERDICT = Verdict(
    Outcome.FAIL, Reason.OUT_OF_TOLERANCE, "validator", "miner", 12, 1, run="run-1",
    units_audited=16, backward_units=8, first_bad_unit=3, start_weights="ab" * 32,
    end_weights="cd" * 32, evidence=(b"\x01" * 32, b"\x02" * 32), detail="unit 3",
)  # fmt: skip


def test_encoding_round_trips_and_is_canonical() -> None:
    data = VERDICT.encode()
    assert Verdict.decode(data) == VERDICT
    assert VERDICT.signing_bytes() == SIGNING_DOMAIN + data
    assert Verdict(Outcome.PASS, Reason.OK, "v", "m", 0, 0).encode() != data
    assert data[:2] == b"\x9f\x01"
    with pytest.raises(ValueError, match="canonical"):
        Verdict.decode(b"\x9f\xcc\x01" + data[2:])  # the same record, a longer integer form


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r[:-1],
        lambda r: [2, *r[1:]],
        lambda r: [*r[:1], "maybe", *r[2:]],
        lambda r: [*r[:2], "because", *r[3:]],
        lambda r: [*r[:5], "12", *r[6:]],
        lambda r: [*r[:5], True, *r[6:]],
        lambda r: [*r[:13], ["not bytes"], *r[14:]],
        lambda r: {"not": "a list"},
    ],
)
def test_decode_refuses_malformed(mutate: object) -> None:
    record = msgpack.unpackb(VERDICT.encode())
    data = msgpack.packb(mutate(record), use_bin_type=True)  # type: ignore[operator]
    with pytest.raises(ValueError):
        Verdict.decode(data)


def test_decode_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        Verdict.decode(b"\xc1")
    with pytest.raises(ValueError):
        Verdict.decode(VERDICT.encode() + b"\x00")


def noisy_claims(units: list[Unit], scale: float) -> list[Unit]:
    """What an honest miner on another device would claim: its outputs differ by rounding."""
    g = torch.Generator().manual_seed(0)
    out = []
    for u in units:
        y = u.claimed_output
        assert y is not None
        if len(y) > 4:
            t = torch.frombuffer(bytearray(y), dtype=torch.float32)
            t = t + scale * t.abs().mean() * torch.randn(t.shape, generator=g)
            y = t.numpy().tobytes()
        out.append(replace(u, claimed_output=y, output_digest=digest(y)))
    return out


def test_tolerant_mode_accepts_rounding_noise_exact_mode_does_not(
    honest: list[WindowRun], dataset: Dataset
) -> None:
    run = honest[1]
    units = noisy_claims(run.audit_units(1, claims=True), 1e-6)
    result = replay(SPEC, 1, run.starts[1], units, dataset)
    tolerant = judge(result, validator="v", miner="m", window=1, stage=1, exact=False)
    assert (tolerant.outcome, tolerant.reason) == (Outcome.PASS, Reason.OK)
    exact = judge(result, validator="v", miner="m", window=1, stage=1, exact=True)
    assert (exact.outcome, exact.reason) == (Outcome.FAIL, Reason.OUTPUT_MISMATCH)
    loud = replay(SPEC, 1, run.starts[1], noisy_claims(units, 1e-1), dataset)
    assert judge(loud, validator="v", miner="m", window=1, stage=1,
                 exact=False).reason is Reason.OUT_OF_TOLERANCE  # fmt: skip


def test_tolerant_mode_without_the_tensor_is_inconclusive(
    honest: list[WindowRun], dataset: Dataset
) -> None:
    run = honest[1]
    units = noisy_claims(run.audit_units(1, claims=True), 1e-6)
    bare = [replace(u, claimed_output=None) for u in units]
    result = replay(SPEC, 1, run.starts[1], bare, dataset)
    verdict = judge(result, validator="v", miner="m", window=1, stage=1, exact=False)
    assert (verdict.outcome, verdict.reason) == (Outcome.INCONCLUSIVE, Reason.UNVERIFIABLE)
    swapped = [replace(u, claimed_output=bytes(len(u.claimed_output or b""))) for u in units]
    result = replay(SPEC, 1, run.starts[1], swapped, dataset)
    verdict = judge(result, validator="v", miner="m", window=1, stage=1, exact=False)
    assert (verdict.outcome, verdict.reason) == (Outcome.INCONCLUSIVE,
                                                 Reason.INCONSISTENT_EVIDENCE)  # fmt: skip


def test_no_units_is_inconclusive() -> None:
    empty = ReplayResult([], "", "", {}, 0.0, True)
    verdict = judge(empty, validator="v", miner="m", window=0, stage=0)
    assert (verdict.outcome, verdict.reason) == (Outcome.INCONCLUSIVE, Reason.NO_UNITS)


def test_real_thread_noise_on_the_small_preset_passes_tolerant_mode(dataset: Dataset) -> None:
    """The miner runs 1 thread, the auditor 2: not bitwise here (the last stage's backward
    differs), but within the calibrated thresholds, weights included."""
    spec = RunSpec(model="small", n_stages=2, vocab_size=512, batch_size=2, seq_len=16,
                   batches_per_window=2, accumulate=1)  # fmt: skip
    (_, starts, units, ends), *_ = pipeline(spec, dataset, 1)
    set_determinism(threads=2)
    try:
        result = replay(spec, 1, starts[1], units[1], dataset)
    finally:
        set_determinism(threads=1)
    bitwise = all(r.match for r in result.units)
    for exact in (False, True):
        verdict = judge(result, validator="v", miner="m", window=0, stage=1, exact=exact,
                        reported_checkpoint=ends[1])  # fmt: skip
        assert verdict.outcome is (Outcome.PASS if bitwise or not exact else Outcome.FAIL)


def test_unreadable_reported_checkpoint_fails(honest: list[WindowRun], dataset: Dataset) -> None:
    run = honest[1]
    result = replay(SPEC, 0, run.starts[0], run.audit_units(0), dataset)
    for exact in (True, False):
        verdict = judge(result, validator="v", miner="m", window=1, stage=0, exact=exact,
                        reported_checkpoint=b"not a checkpoint")  # fmt: skip
        assert (verdict.outcome, verdict.reason) == (Outcome.FAIL, Reason.WEIGHTS_MISMATCH)
