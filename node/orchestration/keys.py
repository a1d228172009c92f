"""The LMDB key layout of the orchestrator core; every key is namespaced by the run id.

Numbers are zero-padded so that prefix scans never confuse window 1 with window 10. Ids that
go into keys (run ids, peer ids) must not contain the separator.
"""

from __future__ import annotations

RUNS = "runs"
ROUTES = "routes"
RECEIPTS = "receipts"
TABLES: tuple[str, ...] = (RUNS, ROUTES, RECEIPTS)

SEP = "/"
MAX_ID_CHARS = 128


def check_id(kind: str, value: str) -> str:
    """`value` if it can be a key component: a non-empty str without '/' up to 128 chars."""
    if not isinstance(value, str) or not value or SEP in value or len(value) > MAX_ID_CHARS:
        raise ValueError(f"{kind} must be 1..{MAX_ID_CHARS} chars without '/', got {value!r}")
    return value


def _n(value: int) -> str:
    return f"{value:010d}"


class Keys:
    """Key builders for one run."""

    __slots__ = ("run",)

    def __init__(self, run_id: str) -> None:
        self.run = check_id("run id", run_id)

    # runs table
    def miner(self, peer_id: str) -> str:
        return f"{self.miners()}{peer_id}"

    def miners(self) -> str:
        return f"{self.run}/miner/"

    # routes table
    def latency(self) -> str:
        return f"{self.run}/latency"

    def route(self, route_id: str) -> str:
        return f"{self.run}/route/{route_id}"

    def open_route(self, route_id: str) -> str:
        return f"{self.open_routes()}{route_id}"

    def open_routes(self) -> str:
        return f"{self.run}/open/"

    def batch(self, window: int, batch: int) -> str:
        return f"{self.batches(window)}{_n(batch)}"

    def batches(self, window: int) -> str:
        return f"{self.run}/batch/{_n(window)}/"

    def waiting(self, window: int, batch: int) -> str:
        return f"{self.waiting_all()}{_n(window)}/{_n(batch)}"

    def waiting_all(self) -> str:
        return f"{self.run}/wait/"

    # receipts table
    def receipt(
        self, window: int, batch: int, stage: int, direction: str, signer: str, route: str
    ) -> str:
        tail = f"/{route}" if route else ""  # a receipt naming no route keeps the older key
        return f"{self.batch_receipts(window, batch)}{_n(stage)}/{direction}/{signer}{tail}"

    def window_receipts(self, window: int) -> str:
        return f"{self.run}/b/{_n(window)}/"

    def batch_receipts(self, window: int, batch: int) -> str:
        return f"{self.run}/b/{_n(window)}/{_n(batch)}/"

    def miner_receipt(
        self, window: int, signer: str, batch: int, stage: int, direction: str, route: str
    ) -> str:
        tail = f"/{route}" if route else ""
        return f"{self.miner_receipts(window, signer)}{_n(batch)}/{_n(stage)}/{direction}{tail}"

    def miner_receipts(self, window: int, signer: str | None = None) -> str:
        head = f"{self.run}/m/{_n(window)}/"
        return head if signer is None else f"{head}{signer}/"

    def dispute(
        self, window: int, batch: int, direction: str, up_stage: int, up: str, down: str
    ) -> str:
        return f"{self.disputes(window)}{_n(batch)}/{direction}/{_n(up_stage)}/{up}/{down}"

    def disputes(self, window: int) -> str:
        return f"{self.run}/d/{_n(window)}/"

    def counts(self, window: int) -> str:
        return f"{self.run}/count/{_n(window)}"
