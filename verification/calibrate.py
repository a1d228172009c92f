"""Measure honest replay noise and fault distances, to set `compare.DEFAULT_TOLERANCE`.

    python -m verification.calibrate [--presets tiny,small] [--windows 2] [--data-dir DIR]

A "miner" trains a 3-stage pipeline (float32, 1 torch thread, the miner's call order and digest
conventions) for a few windows, recording every unit with its wire bytes. Each stage is replayed
from the window's start checkpoint (a) with 2 torch threads, (b) in float64, which stands in for
another device kind (a correctly rounded float32 implementation is about as far from float64 as
this miner). Reported per preset, setting and kind: units, bitwise-equal units, [min, max] of the
relative L2 error and cosine; then the same for each fault kind (zeros, pass-through, random,
copycat, NaN, stale weights) against the honest outputs, and how many of either the default
thresholds misjudge (`honest_rejected`, `faults_accepted`: both must be 0)."""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from p2p.envelope import digest
from p2p.transport import Buffer
from training.data import DataConfig, Dataset, build_dataset
from training.determinism import set_determinism
from training.engine import StageEngine
from training.run_spec import RunSpec
from verification import checkpoints as ck
from verification import compare as cmp
from verification.replay import BACKWARD, FORWARD, Unit, UnitResult, replay, wire

Window = list[list[Unit]]


def _unit(d: str, key: tuple[int, int], x: bytes, y: bytes, version: str, keep: bool) -> Unit:
    """A unit with its claimed output bytes (and input, if `keep`), digests as the miner's."""
    return Unit(d, key[0], key[1], x if keep else None, digest(y), digest(x), "", version, y)


def record_window(
    spec: RunSpec, dataset: Dataset, engines: list[StageEngine], window: int
) -> Window:
    """One window of honest pipeline work, in a 2-in-flight order (F b+1 before B b), as the
    miner's compute records it; each stage's units in its order of computation."""
    units: Window = [[] for _ in engines]
    last = len(engines) - 1
    grads: dict[int, bytes] = {}

    def forward(b: int) -> None:
        ids, targets = spec.batch(dataset, window, b)
        x: torch.Tensor = ids
        for s, engine in enumerate(engines):
            version = engine.weights_digest()
            out = engine.forward((window, b, ""), x, targets if s == last else None)
            if s == last:
                out = out.to(torch.float32).reshape(1)
            wx, wy = bytes(wire(x)), bytes(wire(out))
            units[s].append(_unit(FORWARD, (window, b), wx, wy, version, s > 0))
            x = out
        grad = engine.backward_from_loss((window, b, ""))
        assert grad is not None or last == 0
        y = b"" if grad is None else bytes(wire(grad))
        units[last].append(_unit(BACKWARD, (window, b), bytes(wire(x)), y, version, False))
        grads[b] = y

    def backward(b: int) -> None:
        g = grads.pop(b)
        for s in range(last - 1, -1, -1):
            engine = engines[s]
            version = engine.weights_digest()
            like = torch.empty(spec.batch_size, spec.seq_len, spec.model_config().wire_dim)
            grad_in = cmp.from_wire(g, like)
            assert grad_in is not None
            out = engine.backward((window, b, ""), grad_in)
            y = b"" if out is None else bytes(wire(out))
            units[s].append(_unit(BACKWARD, (window, b), g, y, version, True))
            g = y

    for b in range(spec.batches_per_window):
        forward(b)
        if b:
            backward(b - 1)
    backward(spec.batches_per_window - 1)
    return units


def pipeline(
    spec: RunSpec, dataset: Dataset, windows: int
) -> Iterator[tuple[int, list[bytes | None], Window, list[bytes]]]:
    """(window, start checkpoints, units, end checkpoints) of an honest run, window by window."""
    engines = [ck.build_engine(spec, s, None) for s in range(spec.n_stages)]
    starts: list[bytes | None] = [None] * spec.n_stages
    for window in range(windows):
        units = record_window(spec, dataset, engines, window)
        ends = [ck.checkpoint_bytes(e) for e in engines]
        yield window, starts, units, ends
        starts = list(ends)


def _floats(data: Buffer | None) -> torch.Tensor:
    return torch.frombuffer(bytearray(data or b"\0\0\0\0"), dtype=torch.float32)


def _faults(units: list[Unit], stage: int, n_stages: int) -> dict[str, list[bytes | None]]:
    """Fabricated claimed outputs per fault kind (None: the kind does not apply to the unit)."""
    g = torch.Generator().manual_seed(stage)
    out: dict[str, list[bytes | None]] = {k: [] for k in ("zeros", "passthrough", "random")}
    out |= {"copycat": [], "nan": []}
    previous: dict[str, bytes] = {}
    for u in units:
        y = u.claimed_output
        assert y is not None
        y = bytes(y)
        t = _floats(y) if y else None
        out["zeros"].append(bytes(len(y)) if y else None)
        x = u.inputs if 0 < stage < n_stages - 1 else None
        out["passthrough"].append(x if isinstance(x, bytes) and len(x) == len(y) else None)
        random = None
        if t is not None:
            random = bytes(wire(torch.randn(t.shape, generator=g) * t.norm() / t.numel() ** 0.5))
        out["random"].append(random)
        out["copycat"].append(previous.get(u.direction))
        nan = t.clone().index_fill_(0, torch.tensor([0]), math.nan) if t is not None else None
        out["nan"].append(bytes(wire(nan)) if nan is not None else None)
        if y:
            previous[u.direction] = y
    return out


def _kind(u: Unit, stage: int, n_stages: int) -> str:
    return "loss" if stage == n_stages - 1 and u.direction == FORWARD else u.direction


def _stats(cs: list[cmp.Comparison], exact: int) -> dict[str, Any]:
    """Units, bitwise-equal units, [min, max] of rel_l2 and of cosine over the others."""
    rel, cos = [c.rel_l2 for c in cs] or [0.0], [c.cosine for c in cs] or [1.0]
    return {"units": len(cs) + exact, "bitwise": exact, "rel_l2": [min(rel), max(rel)],
            "cosine": [min(cos), max(cos)]}  # fmt: skip


def _accepted(key: str, c: cmp.Comparison) -> bool:
    return (cmp.WEIGHTS_TOLERANCE if key.endswith("/weights") else cmp.DEFAULT_TOLERANCE).accepts(c)


@dataclass
class _Tally:
    n_stages: int
    noise: dict[str, list[cmp.Comparison]] = field(default_factory=dict)
    exact: dict[str, int] = field(default_factory=dict)
    faults: dict[str, list[cmp.Comparison]] = field(default_factory=dict)
    per_window: dict[str, list[float]] = field(default_factory=dict)

    def honest(self, setting: str, stage: int, u: Unit, r: UnitResult) -> None:
        key = f"{setting}/{_kind(u, stage, self.n_stages)}"
        if r.match:
            self.exact[key] = self.exact.get(key, 0) + 1
        else:
            assert r.comparison is not None, r
            self.noise.setdefault(key, []).append(r.comparison)

    def fault(self, kind: str, stage: int, found: list[tuple[Unit, cmp.Comparison]]) -> None:
        for u, c in found:
            self.faults.setdefault(f"{kind}/{_kind(u, stage, self.n_stages)}", []).append(c)
        if found:
            self.per_window.setdefault(kind, []).append(max(c.rel_l2 for _, c in found))

    def report(self) -> dict[str, Any]:
        keys = sorted(self.noise | self.exact)
        noise, faults = self.noise.items(), self.faults.items()
        return {
            "honest_rejected": sum(not _accepted(k, c) for k, v in noise for c in v),
            "faults_accepted": sum(_accepted(k, c) for k, v in faults for c in v),
            "noise": {k: _stats(self.noise.get(k, []), self.exact.get(k, 0)) for k in keys},
            "faults": {k: _stats(v, 0) for k, v in sorted(self.faults.items())},
            "fault_window_min_of_max_rel_l2": {k: min(v) for k, v in self.per_window.items()},
        }


def calibrate_preset(spec: RunSpec, dataset: Dataset, windows: int) -> dict[str, Any]:
    """Noise by "setting/kind" and fault distances by "fault/kind" (kind: forward, backward,
    loss, weights), plus per fault the smallest over (window, stage) of the largest rel_l2 among
    the window's faulty units: what decides a verdict, which fails on any unit."""
    tally = _Tally(spec.n_stages)
    for _window, starts, units, ends in pipeline(spec, dataset, windows):
        for stage, stage_units in enumerate(units):
            for setting, threads, dtype in (("threads2", 2, torch.float32),
                                            ("float64", 1, torch.float64)):  # fmt: skip
                set_determinism(threads=threads)
                result = replay(spec, stage, starts[stage], stage_units, dataset, dtype=dtype)
                set_determinism(threads=1)
                for u, r in zip(stage_units, result.units, strict=True):
                    tally.honest(setting, stage, u, r)
                weights = ck.compare_weights(ck.checkpoint_weights(ends[stage]), result.weights)
                tally.noise.setdefault(f"{setting}/weights", []).append(weights)
            honest = replay(spec, stage, starts[stage], stage_units, dataset)
            assert all(r.match for r in honest.units), "the replay is not bitwise here"
            for kind, claims in _faults(stage_units, stage, spec.n_stages).items():
                found = []
                for u, claim in zip(stage_units, claims, strict=True):
                    if claim is not None and claim != u.claimed_output:
                        ref = _floats(u.claimed_output)
                        got = cmp.from_wire(claim, ref)
                        assert got is not None
                        found.append((u, cmp.compare(got, ref)))
                tally.fault(kind, stage, found)
            stale = replay(replace(spec, lr=0.0), stage, starts[stage], stage_units, dataset)
            pairs = zip(stage_units, stale.units, strict=True)
            tally.fault("stale", stage, [(u, r.comparison) for u, r in pairs if r.comparison])
            ended = ck.compare_weights(stale.weights, ck.checkpoint_weights(ends[stage]))
            tally.faults.setdefault("stale/weights", []).append(ended)
    return tally.report()


def calibrate(presets: list[str], windows: int, data_dir: Path) -> dict[str, Any]:
    dataset = build_dataset(
        DataConfig(cache_dir=data_dir, vocab_size=512, code_max_bytes=250_000,
                   prose_max_bytes=120_000, math_documents=150)
    )  # fmt: skip
    report: dict[str, Any] = {"tolerance": repr(cmp.DEFAULT_TOLERANCE),
                              "weights_tolerance": repr(cmp.WEIGHTS_TOLERANCE)}  # fmt: skip
    for name in presets:
        spec = RunSpec(model=name, n_stages=3, vocab_size=512, batch_size=4, seq_len=64,
                       batches_per_window=8, accumulate=2, lr=1e-3)  # fmt: skip
        report[name] = calibrate_preset(spec, dataset, windows)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m verification.calibrate")
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    set_determinism(0, threads=1)
    with tempfile.TemporaryDirectory(prefix="tessera-calibrate-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        report = calibrate(args.presets.split(","), args.windows, data_dir)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
