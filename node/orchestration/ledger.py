"""The receipt ledger: validated, signed work claims of miners, indexed for audits and scores.

A receipt is stored twice, under (window, batch, stage, direction, signer) and under
(window, signer, ...), so both a batch's chain and a miner's window are one prefix scan.
Adjacent receipts of one route must chain: the input digest of a hop is the output digest of
the hop that fed it. A break is recorded as a dispute for validators; the receipts stay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from node.orchestration.keys import RECEIPTS, Keys
from node.orchestration.registry import Registry
from node.orchestration.routes import Direction, Route
from node.orchestration.routing import Router
from node.orchestration.window import WindowClock
from p2p.messages import Receipt
from p2p.refusals import Reason
from store import ReadTxn, WriteTxn


class LedgerRefusal(StrEnum):
    """Refusals specific to the ledger (the shared ones come from `p2p.refusals.Reason`)."""

    WRONG_STAGE = "wrong_stage"
    UNKNOWN_BATCH = "unknown_batch"
    STALE_WINDOW = "stale_window"


Refusal = Reason | LedgerRefusal


@dataclass(kw_only=True, slots=True)
class LedgerConfig:
    """What the ledger accepts."""

    digest_bytes: int = 32
    windows_back: int = 1
    """Receipts of the current window and of this many earlier ones are accepted."""

    def __post_init__(self) -> None:
        if self.digest_bytes < 1 or self.windows_back < 0:
            raise ValueError("digest_bytes must be >= 1 and windows_back >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptRecord:
    signer: str
    window: int
    batch: int
    stage: int
    direction: Direction
    input_digest: bytes
    output_digest: bytes
    weights_version: str
    received_at: float
    route: str = ""
    """The route the unit was done on ("" from a sender that named none): a batch re-routed
    through the same miner leaves one receipt per route, so its work can still be replayed."""
    seq: int = 0
    """The signer's sequence number of the receipt: its order among the signer's work."""
    statement: bytes = b""
    """The signed head the receipt arrived as (evidence anyone can verify), when it had one."""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ReceiptRecord:
        return cls(**{**record, "direction": Direction(record["direction"])})


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispute:
    """Two adjacent hops of one route whose digests do not chain."""

    window: int
    batch: int
    direction: Direction
    route_id: str
    upstream_stage: int
    upstream_miner: str
    downstream_stage: int
    downstream_miner: str
    upstream_output: bytes
    downstream_input: bytes
    detected_at: float

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Dispute:
        return cls(**{**record, "direction": Direction(record["direction"])})


def _uint(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _digest(value: object, size: int) -> bytes | None:
    return value if isinstance(value, bytes) and len(value) == size else None


class ReceiptLedger:
    """Receipts and disputes in the `receipts` table, inside the caller's transaction."""

    def __init__(
        self,
        keys: Keys,
        config: LedgerConfig,
        registry: Registry,
        router: Router,
        clock: WindowClock,
    ) -> None:
        self._keys = keys
        self.config = config
        self._registry = registry
        self._router = router
        self._clock = clock

    def ingest(
        self,
        txn: WriteTxn,
        signer: str,
        receipt: Receipt | Mapping[str, Any],
        now: float,
        *,
        seq: int = 0,
        statement: bytes = b"",
    ) -> Refusal | None:
        """Validates and stores a verified receipt; returns why it was refused, or None."""
        if self._registry.get(txn, signer) is None:
            return Reason.UNKNOWN_SENDER
        fields = receipt.meta() if isinstance(receipt, Receipt) else dict(receipt)
        rec = self._parse(signer, fields, now)
        if rec is None:
            return Reason.MALFORMED
        rec = replace(rec, seq=seq, statement=statement)
        current = self._clock.state(txn).window
        if not current - self.config.windows_back <= rec.window <= current:
            return LedgerRefusal.STALE_WINDOW
        routes = self._router.routes_for_batch(txn, rec.window, rec.batch)
        if not routes:
            return LedgerRefusal.UNKNOWN_BATCH
        mine = [
            r for r in routes if r.miners[rec.stage] == signer and rec.route in ("", r.route_id)
        ]
        if not mine:
            return LedgerRefusal.WRONG_STAGE
        k = self._keys
        key = k.receipt(rec.window, rec.batch, rec.stage, rec.direction, signer, rec.route)
        if txn.get(RECEIPTS, key) is not None:
            return Reason.REPLAY
        value = asdict(rec) | {"direction": rec.direction.value}
        txn.put(RECEIPTS, key, value)
        txn.put(
            RECEIPTS,
            k.miner_receipt(rec.window, signer, rec.batch, rec.stage, rec.direction, rec.route),
            value,
        )
        disputes = sum(self._check_chain(txn, rec, route, now) for route in mine)
        self._count(txn, rec.window, receipts=1, disputes=disputes)
        return None

    def receipt(
        self,
        txn: ReadTxn,
        window: int,
        batch: int,
        stage: int,
        direction: str,
        signer: str,
        route: str,
    ) -> ReceiptRecord | None:
        """`signer`'s receipt of the unit on `route` (or on no named route)."""
        for name in dict.fromkeys((route, "")):  # "" once when the route is ""
            key = self._keys.receipt(window, batch, stage, direction, signer, name)
            record = txn.get(RECEIPTS, key)
            if record is not None:
                return ReceiptRecord.from_record(record)
        return None

    def receipts_for(self, txn: ReadTxn, window: int, miner: str) -> list[ReceiptRecord]:
        """A miner's receipts of a window, by batch, stage and direction."""
        scan = txn.scan(RECEIPTS, self._keys.miner_receipts(window, miner))
        return [ReceiptRecord.from_record(r) for _, r in scan]

    def receipts_for_batch(self, txn: ReadTxn, window: int, batch: int) -> list[ReceiptRecord]:
        """A batch's receipts, by stage, direction and signer."""
        scan = txn.scan(RECEIPTS, self._keys.batch_receipts(window, batch))
        return [ReceiptRecord.from_record(r) for _, r in scan]

    def disputes(self, txn: ReadTxn, window: int) -> list[Dispute]:
        return [Dispute.from_record(r) for _, r in txn.scan(RECEIPTS, self._keys.disputes(window))]

    def work_counts(self, txn: ReadTxn, window: int) -> dict[str, dict[str, int]]:
        """{miner: {"forward": n, "backward": n}} over the window's accepted receipts."""
        counts: dict[str, dict[str, int]] = {}
        for _, r in txn.scan(RECEIPTS, self._keys.miner_receipts(window)):
            per = counts.setdefault(r["signer"], {d.value: 0 for d in Direction})
            per[r["direction"]] += 1
        return counts

    def counts(self, txn: ReadTxn, window: int) -> tuple[int, int]:
        """(receipts, disputes) recorded for the window."""
        record = txn.get(RECEIPTS, self._keys.counts(window)) or {}
        return int(record.get("receipts", 0)), int(record.get("disputes", 0))

    def _parse(self, signer: str, fields: dict[str, Any], now: float) -> ReceiptRecord | None:
        window, batch, stage = (_uint(fields.get(name)) for name in ("window", "batch", "stage"))
        size = self.config.digest_bytes
        inp, out = (_digest(fields.get(n), size) for n in ("input_digest", "output_digest"))
        direction, version = fields.get("direction"), fields.get("weights_version")
        if window is None or batch is None or stage is None or inp is None or out is None:
            return None
        if direction not in tuple(Direction) or not isinstance(version, str):
            return None
        if stage >= self._registry.assignment.n_stages:
            return None
        route = fields.get("route", "")
        if not isinstance(route, str) or len(route) > 64:
            return None
        return ReceiptRecord(
            route=route,
            signer=signer,
            window=window,
            batch=batch,
            stage=stage,
            direction=Direction(direction),
            input_digest=inp,
            output_digest=out,
            weights_version=version,
            received_at=now,
        )

    def _check_chain(self, txn: WriteTxn, rec: ReceiptRecord, route: Route, now: float) -> int:
        """Compares `rec` with its neighbours' receipts on `route`; returns new disputes."""
        step = -1 if rec.direction is Direction.FORWARD else 1
        found = 0
        for up_stage, down_stage in ((rec.stage + step, rec.stage), (rec.stage, rec.stage - step)):
            if not (0 <= up_stage < len(route.hops) and 0 <= down_stage < len(route.hops)):
                continue
            up = self._on(txn, rec, route, up_stage)
            down = self._on(txn, rec, route, down_stage)
            if up is None or down is None or up.output_digest == down.input_digest:
                continue
            key = self._keys.dispute(
                rec.window, rec.batch, rec.direction, up_stage, up.signer, down.signer
            )
            if txn.get(RECEIPTS, key) is not None:
                continue
            dispute = Dispute(
                window=rec.window,
                batch=rec.batch,
                direction=rec.direction,
                route_id=route.route_id,
                upstream_stage=up_stage,
                upstream_miner=up.signer,
                downstream_stage=down_stage,
                downstream_miner=down.signer,
                upstream_output=up.output_digest,
                downstream_input=down.input_digest,
                detected_at=now,
            )
            txn.put(RECEIPTS, key, asdict(dispute) | {"direction": rec.direction.value})
            found += 1
        return found

    def _on(
        self, txn: ReadTxn, rec: ReceiptRecord, route: Route, stage: int
    ) -> ReceiptRecord | None:
        if stage == rec.stage:
            return rec
        miner = route.miners[stage]
        return self.receipt(txn, rec.window, rec.batch, stage, rec.direction, miner, route.route_id)

    def _count(self, txn: WriteTxn, window: int, *, receipts: int, disputes: int) -> None:
        have_receipts, have_disputes = self.counts(txn, window)
        record = {"receipts": have_receipts + receipts, "disputes": have_disputes + disputes}
        txn.put(RECEIPTS, self._keys.counts(window), record)
