"""The devnet run's JSON summary, built from the orchestrator's and the miners' `/status`.

Shape: `{"model", "stages", "windows": [{"window", "loss", "tokens", "seconds", "tokens_per_s",
"merged": {stage: members that merged}, "eval": {domain: {"loss", "perplexity"}}}],
"tokens_per_s", "final_loss", "work_per_miner": {name: {"peer_id", "stage", "forward",
"backward", "fault"}}, "time_per_miner": {name: its `/status` miner.time},
"tensor_bytes_sent" (activation and gradient bodies the miners delivered), "perplexity":
{domain: ppl}, "audits": {validator: audit_summary(...)}}`
plus `complete` (the orchestrator said the run is done), `wall_s` and the run's spec.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

WINDOW_KEYS = ("window", "loss", "tokens", "seconds", "tokens_per_s", "merged")


def window_rows(orch: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for record in orch.get("history") or []:
        row = {key: record.get(key) for key in WINDOW_KEYS}
        row["eval"] = dict(record.get("eval") or {})
        rows.append(row)
    return rows


def overall_tokens_per_s(orch: Mapping[str, Any], rows: list[dict[str, Any]]) -> float:
    progress = orch.get("progress") or {}
    rate = progress.get("tokens_per_s")
    if isinstance(rate, int | float) and rate > 0:
        return float(rate)
    tokens = sum(r["tokens"] or 0 for r in rows)
    seconds = sum(r["seconds"] or 0.0 for r in rows)
    return tokens / seconds if seconds > 0 else 0.0


def stage_of(orch: Mapping[str, Any], peer_id: str) -> int | None:
    for stage in orch.get("stages") or []:
        if any(m.get("peer_id") == peer_id for m in stage.get("miners") or []):
            return int(stage["stage"])
    return None


def work_per_miner(
    orch: Mapping[str, Any],
    miners: Mapping[str, tuple[str, Mapping[str, Any] | None]],
) -> dict[str, dict[str, Any]]:
    """{name: {peer_id, stage, forward, backward}}: counts from the orchestrator's ledger (the
    whole run), falling back to the miner's own counters; the stage the orchestrator assigns
    now, else the one the miner last reported (None for a standby)."""
    work = orch.get("work") or {}
    out = {}
    for name, (peer_id, status) in miners.items():
        own = (status or {}).get("miner") or {}
        counts = work.get(peer_id) or {}
        stage = stage_of(orch, peer_id)
        out[name] = {
            "peer_id": peer_id,
            "stage": own.get("stage") if stage is None else stage,
            "forward": int(counts.get("forward", own.get("forward", 0)) or 0),
            "backward": int(counts.get("backward", own.get("backward", 0)) or 0),
        }
    return out


def build_summary(
    orch: Mapping[str, Any] | None,
    miners: Mapping[str, tuple[str, Mapping[str, Any] | None]],
    *,
    model: str,
    stages: int,
    wall_s: float,
) -> dict[str, Any]:
    """The summary document; `orch` is the last `"orchestrator"` status section seen (or None)."""
    orch = orch or {}
    rows = window_rows(orch)
    losses = [r["loss"] for r in rows if isinstance(r["loss"], int | float)]
    final = losses[-1] if losses else (orch.get("progress") or {}).get("loss")
    evals = [r["eval"] for r in rows if r["eval"]]
    perplexity = {d: v.get("perplexity") for d, v in evals[-1].items()} if evals else {}
    spec = orch.get("spec") or {}
    return {
        "model": spec.get("model", model),
        "stages": int(spec.get("n_stages", stages)),
        "run_id": orch.get("run_id"),
        "complete": bool(orch.get("done")),
        "windows": rows,
        "tokens": sum(r["tokens"] or 0 for r in rows),
        "tokens_per_s": overall_tokens_per_s(orch, rows),
        "final_loss": final,
        "first_loss": losses[0] if losses else None,
        "steps": (orch.get("progress") or {}).get("step"),
        "work_per_miner": work_per_miner(orch, miners),
        "time_per_miner": {
            name: ((status or {}).get("miner") or {}).get("time") or {}
            for name, (_, status) in miners.items()
        },
        "tensor_bytes_sent": sum(
            int(events.get(kind, 0))
            for _, status in miners.values()
            for events in [((status or {}).get("miner") or {}).get("events") or {}]
            for kind in ("activation_bytes", "gradient_bytes")
        ),
        "perplexity": perplexity,
        "wall_s": round(wall_s, 3),
        "spec": spec,
    }


def audit_summary(section: Mapping[str, Any] | None, names: Mapping[str, str]) -> dict[str, Any]:
    """A validator's `/status` section as {"audited_windows", "verdicts", "miners": {name:
    {"pass", "fail", "inconclusive", "incentive", and from its pay book "escrow",
    "barred_through", "first_fail", "work" (backward units in the horizon)}}}, miners named by
    `names` (peer id -> name)."""
    section = section or {}
    audited = section.get("audited") or {}
    incentive = (section.get("scores") or {}).get("incentives") or {}
    standings = (section.get("scores") or {}).get("standings") or {}
    miners = {}
    for peer in sorted(set(audited) | set(incentive)):
        counts = audited.get(peer) or {}
        standing = standings.get(peer) or {}
        miners[names.get(peer, peer)] = {
            **{o: int(counts.get(o, 0)) for o in ("pass", "fail", "inconclusive")},
            "incentive": float(incentive.get(peer, 0.0)),
            **{k: standing[k] for k in ("escrow", "barred_through", "first_fail", "work")
               if k in standing},
        }  # fmt: skip
    next_window = section.get("next_window")
    return {
        "audited_windows": next_window if isinstance(next_window, int) else 0,
        "verdicts": dict(section.get("verdicts") or {}),
        "miners": dict(sorted(miners.items())),
        "quality": quality_summary(section.get("quality"), names),
    }


def quality_summary(section: Mapping[str, Any] | None, names: Mapping[str, str]) -> dict[str, Any]:
    """A validator's quality section with miners named: {"ranking", "miners", "weights",
    "stage_weights", "quality_multipliers", "capacity_factors", "cpu_s", "events"}."""
    if not section:
        return {}

    def named(values: Mapping[str, Any]) -> dict[str, Any]:
        return {names.get(p, p): v for p, v in sorted(values.items())}

    return {
        "ranking": [names.get(p, p) for p in section.get("ranking") or []],
        "miners": named(section.get("miners") or {}),
        "weights": named(section.get("weights") or {}),
        "stage_weights": dict(section.get("stage_weights") or {}),
        "quality_multipliers": named(section.get("quality_multipliers") or {}),
        "capacity_factors": named(section.get("capacity_factors") or {}),
        "cpu_s": section.get("cpu_s"),
        "events": dict(section.get("events") or {}),
    }


def chain_summary(
    section: Mapping[str, Any] | None, nodes: Mapping[str, tuple[str, str]]
) -> dict[str, Any]:
    """The chain node's `/status` section as {"block", "epochs", "uids": [{"uid", "name",
    "role", "hotkey", "incentive", "dividends", "emission"}]}: `nodes` maps hotkey -> (name,
    role); emission is what the uid received over the run (miner plus validator share)."""
    section = section or {}
    uids = []
    for n in section.get("neurons") or []:
        name, role = nodes.get(n.get("hotkey", ""), ("?", "?"))
        total = float(n.get("server_emission_total", 0.0)) + float(
            n.get("validator_emission_total", 0.0)
        )
        uids.append({
            "uid": n.get("uid"), "name": name, "role": role, "hotkey": n.get("hotkey"),
            "incentive": float(n.get("incentive", 0.0)),
            "dividends": float(n.get("dividends", 0.0)), "emission": total,
        })  # fmt: skip
    return {"block": section.get("block"), "epochs": section.get("epochs"), "uids": uids}


def write_summary(path: Path, doc: Mapping[str, Any]) -> None:
    """Writes the JSON atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
