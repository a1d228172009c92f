"""The quality screen: how much each miner's window contribution alone improves the model.

Replay proves a miner's work but costs a share of its compute, so a validator replays a sample;
the screen is cheap enough to give every miner every window. For miner m on stage s in window w
its delta is its own window-end weights (before the stage's merge) minus the weights it started
the window from. The delta is applied alone to the model the window started from (every stage
at the run's merged checkpoint) and the validator measures L_before - L_after on a held-out batch
drawn from its own committed secret for w, which the miner cannot know while it trains. A miner
whose delta does not lower the loss is audited by replay next; proof stays with recomputation.

Cost: one forward of the whole model for the base, whose activations at every stage boundary
are kept, then per miner of stage s a forward of stages s..n-1 only.

Sync: how far the weights a miner started from are from the merged version it was given, as
the mean absolute difference over all its weights divided by the learning rate (Templar's
"steps behind": one optimizer step moves a weight by about the learning rate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import blake3
import torch
from torch.func import functional_call

from training.data import schedule
from training.data.dataset import Dataset
from training.run_spec import RunSpec
from training.stages import StageModule, split_layers
from verification.checkpoints import checkpoint_weights

SCREEN_DOMAIN = b"tessera/screen/1"


@dataclass(frozen=True, slots=True)
class Contribution:
    """What the validator knows of one miner's window: its stage, the checkpoint it started
    from and its own window-end checkpoint (None: seed init / not reported)."""

    miner: str
    stage: int
    start: bytes | None
    end: bytes | None


@dataclass(frozen=True, slots=True)
class Screen:
    miner: str
    stage: int
    loss_before: float
    loss_after: float
    steps_behind: float
    """Mean |start - merged| over its weights, in learning rates (0: it started in sync)."""
    missing: bool = False
    """No window-end checkpoint of its own (or one that does not fit the stage)."""

    @property
    def improvement(self) -> float:
        """L_before - L_after (> 0: its delta alone lowers the held-out loss)."""
        return self.loss_before - self.loss_after if not self.missing else 0.0

    def to_record(self) -> dict[str, float | int | bool]:
        return {
            "stage": self.stage,
            "loss_before": self.loss_before,
            "loss_after": self.loss_after,
            "steps_behind": self.steps_behind,
            "missing": self.missing,
        }

    @classmethod
    def from_record(cls, miner: str, row: Mapping[str, float | int | bool]) -> Screen:
        return cls(
            miner=miner,
            stage=int(row["stage"]),
            loss_before=float(row["loss_before"]),
            loss_after=float(row["loss_after"]),
            steps_behind=float(row["steps_behind"]),
            missing=bool(row["missing"]),
        )


def heldout_batch(
    dataset: Dataset,
    secret: bytes,
    window: int,
    *,
    batch_size: int,
    seq_len: int,
    mixture: Mapping[str, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The screening batch of `window`: held-out sequences drawn from the validator's secret
    (its batch plan is the training schedule's, over the held-out split, in the run's mix)."""
    digest = blake3.blake3(SCREEN_DOMAIN + secret + window.to_bytes(8, "big")).digest()
    seed = int.from_bytes(digest[:8], "big")
    return schedule.batch(dataset.heldout, seed, window, 0, batch_size=batch_size, seq_len=seq_len)


def _module(spec: RunSpec, stage: int, weights: Mapping[str, torch.Tensor] | None) -> StageModule:
    config = spec.model_config()
    stage_spec = split_layers(config.n_layers, spec.n_stages)[stage]
    module = StageModule(config, stage_spec, seed=spec.seed if weights is None else None)
    if weights is not None:
        module.load_state_dict(dict(weights), strict=True)
    return module.eval()


def _weights(spec: RunSpec, stage: int, checkpoint: bytes | None) -> dict[str, torch.Tensor]:
    if checkpoint is not None:
        return checkpoint_weights(checkpoint)
    return {k: v.detach().clone() for k, v in _module(spec, stage, None).state_dict().items()}


@torch.no_grad()
def screen_window(
    spec: RunSpec,
    base: Mapping[int, bytes | None],
    contributions: Sequence[Contribution],
    batch: tuple[torch.Tensor, torch.Tensor],
) -> dict[str, Screen]:
    """Screen every contribution against the `base` model (stage -> checkpoint the window
    started from, None = seed init) on `batch` (see the module docstring)."""
    ids, targets = batch
    merged = {s: _weights(spec, s, base.get(s)) for s in range(spec.n_stages)}
    stages = [_module(spec, s, merged[s]) for s in range(spec.n_stages)]
    inputs: list[torch.Tensor] = [ids]
    for stage in stages[:-1]:
        inputs.append(stage(inputs[-1]))
    before = float(stages[-1](inputs[-1], targets))
    out: dict[str, Screen] = {}
    for c in contributions:
        if not 0 <= c.stage < spec.n_stages:
            raise ValueError(f"stage {c.stage} outside 0..{spec.n_stages - 1}")
        given = merged[c.stage]
        start = _weights(spec, c.stage, c.start) if c.start is not None else given
        behind = _steps_behind(start, given, spec.lr)
        end = checkpoint_weights(c.end) if c.end is not None else None
        if end is None or end.keys() != given.keys() or start.keys() != given.keys():
            out[c.miner] = Screen(c.miner, c.stage, before, before, behind, missing=True)
            continue
        moved = {
            k: given[k] + (end[k].to(given[k].dtype) - start[k].to(given[k].dtype)) for k in given
        }
        module = stages[c.stage]  # run with the moved weights, without building a module
        if c.stage == spec.n_stages - 1:
            after = float(functional_call(module, moved, (inputs[c.stage], targets)))
        else:
            x = functional_call(module, moved, (inputs[c.stage],))
            for later in stages[c.stage + 1 : -1]:
                x = later(x)
            after = float(stages[-1](x, targets))
        if after != after or after in (float("inf"), float("-inf")):
            after = float("inf")  # a delta that breaks the model is the worst contribution
        out[c.miner] = Screen(c.miner, c.stage, before, after, behind)
    return out


def _steps_behind(
    start: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], lr: float
) -> float:
    if start.keys() != given.keys():
        return float("inf")
    total = sum(float((start[k].double() - given[k].double()).abs().sum()) for k in given)
    count = sum(v.numel() for v in given.values())
    return total / max(count, 1) / lr if lr > 0 else 0.0
