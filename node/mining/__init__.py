"""The miner's pipeline compute: stage assignment, the compute worker, the Work / Activation /
Gradient handlers, receipts, retention of inputs and outputs, and window closes.

`node.roles.miner.MinerComponent` composes these parts; each is usable (and tested) alone.
"""

from node.mining.assignment import Assigner
from node.mining.closing import WindowCloser
from node.mining.handlers import Handlers
from node.mining.pipeline import Pipeline, PipelineLimits
from node.mining.receipts import ReceiptSender
from node.mining.retention import RetainedUnit, Retention
from node.mining.state import BatchKey, MinerState, StageHolding
from node.mining.worker import ComputeWorker

__all__ = [
    "Assigner",
    "BatchKey",
    "ComputeWorker",
    "Handlers",
    "MinerState",
    "Pipeline",
    "PipelineLimits",
    "ReceiptSender",
    "RetainedUnit",
    "Retention",
    "StageHolding",
    "WindowCloser",
]
