"""What a `ChainQuery` can ask the devnet chain for, as plain msgpack-able data."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from node.chain.ledger import DevnetLedger


def view(ledger: DevnetLedger, what: str, block: int) -> Any:
    """The view named `what` (KeyError for an unknown one)."""
    return VIEWS[what](ledger, block)


def _metagraph(ledger: DevnetLedger, block: int) -> dict[str, Any]:
    graph = ledger.metagraph(block)
    neurons = [dataclasses.asdict(n) for n in graph.neurons]
    return {"netuid": graph.netuid, "block": graph.block, "neurons": neurons}


def _epochs(ledger: DevnetLedger, block: int) -> list[dict[str, Any]]:
    """Every kept epoch's block and result; the last one with its inputs too."""
    records = ledger.epochs()
    return [
        {k: v for k, v in r.items() if k != "inputs" or i == len(records) - 1}
        for i, r in enumerate(records)
    ]


VIEWS: dict[str, Callable[[DevnetLedger, int], Any]] = {
    "block": lambda ledger, block: {"block": block},
    "metagraph": _metagraph,
    "weights": lambda ledger, block: {str(u): row for u, row in ledger.weights().items()},
    "mechanisms": lambda ledger, block: [
        {str(u): row for u, row in ledger.weights(m).items()}
        for m in range(len(ledger.params.mechanism_split))
    ],
    "hyperparams": lambda ledger, block: dataclasses.asdict(ledger.params),
    "epochs": _epochs,
    "totals": lambda ledger, block: ledger.totals(),
}
