"""The validator's audit records in LMDB (`audits` table), one prefix per kind:

<run>/c/<window>        -> {commitment, secret, committed_at, opened}   (commit / reveal)
<run>/r/<window>        -> {secret}                                      (revealed)
<run>/work/<window>     -> {miner: backward receipts}                    (the score book's S)
<run>/v/<window>/<miner> -> {statement: signed AuditVerdict head, verdict: Verdict.encode()}
<run>/q/<window>        -> {screens: {miner: Screen record}, stage_of, capacity, seconds, ...}
<run>/f/<window>/<miner>/<validator> -> {outcome}                      (others' fails checked)
<run>/quality           -> {window: last window folded, miners: {miner: MinerScore record}}
<run>/next              -> the next window to audit

Records of a window are kept while they can still change a pay, a draw or the quality book
(`node.auditing.retention` says which, `prune` forgets the rest).
"""

from __future__ import annotations

import time
from typing import Any

from store import Store
from verification.selection import commitment, new_secret
from verification.verdict import Outcome, Verdict

AUDITS = "audits"
WINDOW_KINDS = ("c", "r", "work", "q", "f", "v")
"""The kinds of record keyed by window (`prune` goes through them)."""


class AuditRecords:
    def __init__(self, store: Store, run_id: str, validator: str) -> None:
        self._store = store
        self._run = run_id
        self._validator = validator

    def _key(self, kind: str, window: int, rest: str = "") -> str:
        return f"{self._run}/{kind}/{window:010d}{'/' + rest if rest else ''}"

    # commit / reveal -------------------------------------------------------------------------

    def commit(self, window: int, *, opened: bool) -> bytes:
        """The commitment for `window`, made (with a fresh secret) the first time it is asked.

        `opened`: the window had already opened when the commitment was first made (a
        validator that joined late); recorded for anyone checking the draw."""
        return self.commit_many([window], opened=opened)[0]

    def commit_many(self, windows: list[int], *, opened: bool) -> list[bytes]:
        """`commit` for several windows in one transaction."""
        out = []
        with self._store.write() as txn:
            for window in windows:
                key = self._key("c", window)
                row = txn.get(AUDITS, key)
                if row is None:
                    secret = new_secret()
                    row = {
                        "commitment": commitment(self._validator, window, secret),
                        "secret": secret,
                        "committed_at": time.time(),
                        "opened": opened,
                    }
                    txn.put(AUDITS, key, row)
                out.append(bytes(row["commitment"]))
        return out

    def secret(self, window: int) -> bytes | None:
        with self._store.read() as txn:
            row = txn.get(AUDITS, self._key("c", window))
        return None if row is None else bytes(row["secret"])

    def reveal(self, window: int) -> bytes | None:
        """Publish the secret of `window` (after it closed); None without a commitment."""
        secret = self.secret(window)
        if secret is not None:
            with self._store.write() as txn:
                row = dict(txn.get(AUDITS, self._key("r", window)) or {})
                txn.put(AUDITS, self._key("r", window), {**row, "secret": secret})
        return secret

    def set_chances(self, window: int, chances: dict[str, float]) -> None:
        """Keep the audit probabilities `window` was drawn with, beside its revealed secret."""
        with self._store.write() as txn:
            row = dict(txn.get(AUDITS, self._key("r", window)) or {})
            row["chances"] = dict(chances)
            txn.put(AUDITS, self._key("r", window), row)

    def chances(self, window: int) -> dict[str, float] | None:
        with self._store.read() as txn:
            row = txn.get(AUDITS, self._key("r", window))
        return None if row is None or "chances" not in row else dict(row["chances"])

    def commitments(self, around: int, before: int = 6, after: int = 2) -> dict[str, Any]:
        """Commitments of windows `around - before` .. `around + after` with their secrets once
        revealed (hex, for /status)."""
        out: dict[str, Any] = {}
        with self._store.read() as txn:
            for window in range(max(around - before, 0), around + after + 1):
                row = txn.get(AUDITS, self._key("c", window))
                if row is None:
                    continue
                revealed = txn.get(AUDITS, self._key("r", window))
                out[str(window)] = {
                    "commitment": bytes(row["commitment"]).hex(),
                    "opened": bool(row.get("opened")),
                    "secret": bytes(revealed["secret"]).hex() if revealed else None,
                    "chances": dict(revealed.get("chances", {})) if revealed else None,
                }
        return out

    # progress, work and verdicts -------------------------------------------------------------

    def next_window(self) -> int | None:
        with self._store.read() as txn:
            value = txn.get(AUDITS, f"{self._run}/next")
        return None if value is None else int(value)

    def set_next_window(self, window: int) -> None:
        with self._store.write() as txn:
            txn.put(AUDITS, f"{self._run}/next", window)

    def set_work(self, window: int, work: dict[str, int]) -> None:
        with self._store.write() as txn:
            txn.put(AUDITS, self._key("work", window), dict(work))

    def work(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        with self._store.read() as txn:
            for key, row in txn.scan(AUDITS, f"{self._run}/work/"):
                window = int(key.decode().rsplit("/", 1)[1])
                out.update({(m, window): int(n) for m, n in row.items()})
        return out

    def add_verdict(
        self, verdict: Verdict, statement: bytes, *, evidence: tuple[bytes, ...] = ()
    ) -> None:
        """Keep a signed verdict; `evidence`: the digests its one evidence digest covers."""
        key = self._key("v", verdict.window, verdict.miner)
        row = {"statement": statement, "verdict": verdict.encode(), "evidence": list(evidence)}
        with self._store.write() as txn:
            txn.put(AUDITS, key, row)

    def verdicts(self) -> list[Verdict]:
        with self._store.read() as txn:
            rows = [r for _, r in txn.scan(AUDITS, f"{self._run}/v/")]
        return [Verdict.decode(bytes(r["verdict"])) for r in rows]

    def foreign_checked(self, window: int, miner: str, validator: str) -> str | None:
        """What checking another validator's fail of (window, miner) gave (None: unchecked)."""
        with self._store.read() as txn:
            row = txn.get(AUDITS, self._key("f", window, f"{miner}/{validator}"))
        return None if row is None else str(row["outcome"])

    def set_foreign_checked(self, window: int, miner: str, validator: str, outcome: str) -> None:
        with self._store.write() as txn:
            txn.put(AUDITS, self._key("f", window, f"{miner}/{validator}"), {"outcome": outcome})

    def statement(self, window: int, miner: str) -> bytes | None:
        """The signed AuditVerdict head of an audit (for anyone to verify)."""
        with self._store.read() as txn:
            row = txn.get(AUDITS, self._key("v", window, miner))
        return None if row is None else bytes(row["statement"])

    # quality screen --------------------------------------------------------------------------

    def set_screen(self, window: int, screens: dict[str, Any], facts: dict[str, Any]) -> None:
        """Keep a window's screens (miner -> `Screen.to_record()`) and its facts (stage of each
        miner, declared capacities, seconds, tokens per batch)."""
        with self._store.write() as txn:
            txn.put(AUDITS, self._key("q", window), {"screens": screens, **facts})

    def screen(self, window: int) -> dict[str, Any] | None:
        with self._store.read() as txn:
            row: dict[str, Any] | None = txn.get(AUDITS, self._key("q", window))
        return row

    def screens(self, since: int = 0) -> dict[int, dict[str, Any]]:
        """Window -> its screen record, for the windows from `since` on."""
        out: dict[int, dict[str, Any]] = {}
        with self._store.read() as txn:
            for key, row in txn.range(AUDITS, self._key("q", since), f"{self._run}/q/~"):
                out[int(key.decode().rsplit("/", 1)[1])] = row
        return out

    def quality_book(self) -> dict[str, Any] | None:
        """The folded quality book: {"window": last window folded in, "miners": {...}}."""
        with self._store.read() as txn:
            row: dict[str, Any] | None = txn.get(AUDITS, f"{self._run}/quality")
        return row

    def set_quality_book(self, window: int, miners: dict[str, Any]) -> None:
        with self._store.write() as txn:
            txn.put(AUDITS, f"{self._run}/quality", {"window": window, "miners": miners})

    # retention -------------------------------------------------------------------------------

    def prune(self, before: int, *, fails_before: int) -> int:
        """Delete every record of the windows `< before`, except the verdicts of failed audits
        of windows `>= fails_before` (a fail bars its miner for the penalty windows after it);
        returns how many records went."""
        fails_before = min(fails_before, before)
        doomed: list[bytes] = []
        with self._store.read() as txn:
            for kind in WINDOW_KINDS:
                start, stop = f"{self._run}/{kind}/", self._key(kind, max(before, 0))
                for key, row in txn.range(AUDITS, start, stop):
                    window = int(key.decode()[len(start) :].split("/", 1)[0])
                    if kind == "v" and window >= fails_before and _failed(row):
                        continue
                    doomed.append(key)
        if doomed:
            with self._store.write() as txn:
                for key in doomed:
                    txn.delete(AUDITS, key)
        return len(doomed)


def _failed(row: dict[str, Any]) -> bool:
    return Verdict.decode(bytes(row["verdict"])).outcome is Outcome.FAIL
