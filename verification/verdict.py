"""Audit verdicts: pass / fail / inconclusive with a reason code, and how a replay is judged.

A `Verdict` has a canonical byte form (`encode`: msgpack of a fixed-order list) that the
validator signs with its node key (`signing_bytes` adds a domain) and that anyone can `decode`.

`judge` turns a `ReplayResult` into a verdict. Exact mode (same device kind and determinism
settings as the miner) fails any digest mismatch; tolerant mode compares the miner's fetched
output with `Tolerance` thresholds and is inconclusive where it has nothing to compare. A definite
fault anywhere wins over missing evidence; missing or inconsistent evidence alone is
inconclusive, which never costs the miner anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgpack

from verification.checkpoints import checkpoint_digest, checkpoint_weights, compare_weights
from verification.compare import (
    DEFAULT_TOLERANCE,
    FRESH_TOLERANCE,
    MISSHAPEN,
    WEIGHTS_TOLERANCE,
    Comparison,
    Tolerance,
)
from verification.replay import BACKWARD, ReplayResult, UnitResult

SIGNING_DOMAIN = b"tessera/verdict/1\n"
FORMAT = 1


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class Reason(StrEnum):
    OK = "ok"
    OUTPUT_MISMATCH = "output_mismatch"
    """Exact mode: a recomputed output's digest differs from the receipt's."""
    OUT_OF_TOLERANCE = "out_of_tolerance"
    NON_FINITE = "non_finite"
    WRONG_SHAPE = "wrong_shape"
    INPUT_MISMATCH = "input_mismatch"
    """A rebuilt input (stage 0's scheduled batch, the last stage's loss) has another digest than
    the receipt claims: the miner computed on other data."""
    IMPOSSIBLE_UNIT = "impossible_unit"
    """A unit no honest engine could compute in that order (backward without a forward)."""
    WEIGHTS_MISMATCH = "weights_mismatch"
    """The reported window-end checkpoint is not what the replayed units produce."""
    MISSING_EVIDENCE = "missing_evidence"
    INCONSISTENT_EVIDENCE = "inconsistent_evidence"
    """Fetched bytes do not match the digests they were fetched by."""
    UNVERIFIABLE = "unverifiable"
    """Tolerant mode: an output differs bitwise and the miner's tensor was not available."""
    NO_UNITS = "no_units"


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reason: Reason
    validator: str
    miner: str
    window: int
    stage: int
    run: str = ""
    units_audited: int = 0
    """Units replayed and checked."""
    backward_units: int = 0
    """Backward units the miner's receipts claim in the window (its S if it stands)."""
    first_bad_unit: int = -1
    start_weights: str = ""
    end_weights: str = ""
    """Weights digests: the checkpoint the replay started from, and where it ended."""
    evidence: tuple[bytes, ...] = ()
    """Digests of the evidence used (receipt heads, inputs, checkpoints), for the record."""
    detail: str = ""

    def encode(self) -> bytes:
        record = [
            FORMAT, self.outcome.value, self.reason.value, self.validator, self.miner,
            self.window, self.stage, self.run, self.units_audited, self.backward_units,
            self.first_bad_unit, self.start_weights, self.end_weights, list(self.evidence),
            self.detail,
        ]  # fmt: skip
        data: bytes = msgpack.packb(record, use_bin_type=True)
        return data

    def signing_bytes(self) -> bytes:
        return SIGNING_DOMAIN + self.encode()

    @classmethod
    def decode(cls, data: bytes) -> Verdict:
        """Raises ValueError for anything but a well-formed encoding."""
        try:
            record: Any = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except (ValueError, msgpack.UnpackException) as exc:
            raise ValueError(f"verdict: {exc}") from None
        if not isinstance(record, list) or len(record) != 15 or record[0] != FORMAT:
            raise ValueError("verdict: not a format-1 record")
        (_, outcome, reason, validator, miner, window, stage, run, audited, backward,
         first_bad, start, end, evidence, detail) = record  # fmt: skip
        strings = (validator, miner, run, start, end, detail)
        ints = (window, stage, audited, backward, first_bad)
        if not all(isinstance(s, str) for s in strings) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ints
        ):
            raise ValueError("verdict: wrong field types")
        if not isinstance(evidence, list) or not all(isinstance(e, bytes) for e in evidence):
            raise ValueError("verdict: evidence must be a list of digests")
        verdict = cls(
            Outcome(outcome), Reason(reason), validator, miner, window, stage, run, audited,
            backward, first_bad, start, end, tuple(evidence), detail,
        )  # fmt: skip
        if verdict.encode() != bytes(data):
            raise ValueError("verdict: not in canonical form")
        return verdict


def _unit_fault(
    unit: UnitResult, *, exact: bool, tolerance: Tolerance, fresh: Tolerance
) -> Reason | None:
    """A definite fault of one replayed unit; OK when it holds; None when undecidable."""
    if unit.note.startswith("impossible unit"):
        return Reason.IMPOSSIBLE_UNIT
    if unit.input_ok is False:
        return Reason.INPUT_MISMATCH
    if unit.match:
        return Reason.OK
    c = unit.comparison
    if c is not None and (not c.shape_ok or not c.finite):
        return Reason.WRONG_SHAPE if not c.shape_ok else Reason.NON_FINITE
    if exact:
        return Reason.OUTPUT_MISMATCH
    if c is None:
        return None
    limit = fresh if unit.steps == 0 else tolerance
    return Reason.OK if limit.accepts(c) else Reason.OUT_OF_TOLERANCE


def judge(
    result: ReplayResult,
    *,
    validator: str,
    miner: str,
    window: int,
    stage: int,
    run: str = "",
    exact: bool = True,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
    fresh_tolerance: Tolerance = FRESH_TOLERANCE,
    reported_checkpoint: bytes | None = None,
    weights_tolerance: Tolerance = WEIGHTS_TOLERANCE,
    evidence: Iterable[bytes] = (),
) -> Verdict:
    """The verdict on a miner's replayed window (see the module docstring).

    `reported_checkpoint`: the window-end checkpoint the miner reported, checked against the
    replayed weights when the replay covered the whole window (None: not checked).
    """
    replayed = [u for u in result.units if u.replayed]

    def verdict(outcome: Outcome, reason: Reason, bad: int = -1, detail: str = "") -> Verdict:
        return Verdict(
            outcome, reason, validator, miner, window, stage, run, len(replayed),
            sum(u.direction == BACKWARD for u in result.units), bad,
            result.start_weights_digest, result.weights_digest, tuple(evidence), detail,
        )  # fmt: skip

    if not result.units:
        return verdict(Outcome.INCONCLUSIVE, Reason.NO_UNITS)
    undecided: UnitResult | None = None
    for unit in replayed:
        fault = _unit_fault(unit, exact=exact, tolerance=tolerance, fresh=fresh_tolerance)
        if fault is None:
            undecided = undecided or unit
        elif fault is not Reason.OK:
            return verdict(Outcome.FAIL, fault, unit.index, _describe(unit))
    if not result.complete:
        stop = next(u for u in result.units if not u.replayed)
        reason = Reason.INCONSISTENT_EVIDENCE if stop.input_ok is False else Reason.MISSING_EVIDENCE
        return verdict(Outcome.INCONCLUSIVE, reason, -1, f"unit {stop.index}: {stop.note}")
    if undecided is not None:
        reason = Reason.INCONSISTENT_EVIDENCE if undecided.note else Reason.UNVERIFIABLE
        return verdict(Outcome.INCONCLUSIVE, reason, -1, _describe(undecided))
    if reported_checkpoint is not None:
        comparison = _weights_check(result, reported_checkpoint, exact=exact)
        if comparison is not None and not weights_tolerance.accepts(comparison):
            detail = "reported checkpoint differs from the replayed weights"
            if comparison.shape_ok:
                detail += f" (rel_l2 {comparison.rel_l2:.3g}, cosine {comparison.cosine:.6f})"
            return verdict(Outcome.FAIL, Reason.WEIGHTS_MISMATCH, -1, detail)
    return verdict(Outcome.PASS, Reason.OK)


def _weights_check(result: ReplayResult, reported: bytes, *, exact: bool) -> Comparison | None:
    """None when the reported checkpoint holds exactly the replayed weights; else a comparison
    (misshapen for a file that does not parse: the miner signed its digest, so it is its own)."""
    try:
        if exact:
            return None if checkpoint_digest(reported) == result.weights_digest else MISSHAPEN
        return compare_weights(checkpoint_weights(reported), result.weights)
    except Exception:  # safetensors raises its own error types for a malformed file
        return MISSHAPEN


def _describe(unit: UnitResult) -> str:
    text = f"unit {unit.index} ({unit.direction} w{unit.window} b{unit.batch})"
    if unit.comparison is not None:
        c = unit.comparison
        text += f": rel_l2 {c.rel_l2:.3g}, cosine {c.cosine:.6f}"
    return f"{text}; {unit.note}" if unit.note else text
