"""Where merge disputes land: the orchestrator and validators keep every `MergeDispute` a member
sends (in the `merges` table, by window, stage, partition and reporter) and count them.

The envelope the dispute came in was verified against the reporter's key before the handler
runs; only admitted miners may report.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from p2p.admission import PeerSession
from p2p.endpoint import Endpoint
from p2p.merge_messages import MergeDispute
from p2p.messages import Ack, Message
from p2p.refusals import Reason, Refused
from store import Store

MERGES = "merges"


class DisputeLog:
    def __init__(self, store: Store, run_id: str) -> None:
        self._store = store
        self._run = run_id
        self.counters: Counter[str] = Counter()

    def register(self, endpoint: Endpoint) -> None:
        endpoint.register(MergeDispute, self.on_dispute)

    async def on_dispute(self, msg: MergeDispute, peer: PeerSession) -> Message:
        if "miner" not in peer.roles:
            raise Refused(Reason.NOT_ALLOWED, "only miners report merge disputes")
        if len(msg.owners) != len(msg.digests) or not set(msg.wrong) <= set(msg.owners):
            raise Refused(Reason.MALFORMED, "owners, digests and wrong owners do not match")
        key = f"{self._run}/d/{msg.window:010d}/{msg.stage:04d}/{msg.part:06d}/{peer.peer_id}"
        row = {
            "reporter": peer.peer_id,
            "window": msg.window,
            "stage": msg.stage,
            "part": msg.part,
            "owners": list(msg.owners),
            "digests": [bytes(d) for d in msg.digests],
            "recomputed": bytes(msg.recomputed),
            "wrong": list(msg.wrong),
            "received_at": time.time(),
        }
        with self._store.write() as txn:
            txn.put(MERGES, key, row)
        self.counters["disputes"] += 1
        for owner in msg.wrong:
            self.counters[f"wrong/{owner}"] += 1
        return Ack()

    def disputes(self, window: int | None = None) -> list[dict[str, Any]]:
        prefix = f"{self._run}/d/" + ("" if window is None else f"{window:010d}/")
        with self._store.read() as txn:
            return [dict(r) for _, r in txn.scan(MERGES, prefix)]

    def accused(self) -> dict[str, int]:
        """Owners named wrong, with how many (partition, reporter) disputes name them."""
        out: Counter[str] = Counter()
        for row in self.disputes():
            out.update(row["wrong"])
        return dict(out)
