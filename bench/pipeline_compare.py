"""bench/pipeline.py's comparison of a devnet's training against the one-process run: throughput
over the steady windows and the final losses, at equal tokens and at matched optimizer steps."""

from __future__ import annotations

from typing import Any


def rate(windows: list[dict[str, Any]]) -> float:
    tokens = sum(w["tokens"] or 0 for w in windows)
    seconds = sum(w["seconds"] or 0.0 for w in windows)
    return tokens / seconds if seconds > 0 else 0.0


def step_matched(local: dict[str, Any], steps_per_window: int, miners_per_stage: int) -> float:
    """One-process mean loss over the optimizer steps a devnet miner makes in the last window.

    With m miners per stage each makes 1/m of a window's steps, so after w windows it has made
    w * steps / m of them: its last window matches those steps of one-process training."""
    per_miner = steps_per_window // miners_per_stage
    end = len(local["windows"]) * per_miner
    losses: list[float] = local["step_losses"][end - per_miner : end]
    return sum(losses) / len(losses)


def compare(
    local: dict[str, Any],
    net: dict[str, Any],
    steps_per_window: int,
    miners_per_stage: int,
    repeat: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Devnet against one process; the one-process rate pools `local` and its `repeat` run."""
    lw, nw = local["windows"], net["windows"]
    steady = slice(1, None) if len(lw) > 1 and len(nw) > 1 else slice(None)
    runs = [local["windows"], *([repeat["windows"]] if repeat else [])]
    base = [w for run in runs for w in run[steady]]
    local_final, net_final = lw[-1]["loss"], net["final_loss"]
    matched = step_matched(local, steps_per_window, miners_per_stage)
    local_tokens, net_tokens = sum(w["tokens"] for w in lw), net["tokens"]
    return {
        "tokens_per_s_ratio": rate(nw[steady]) / max(rate(base), 1e-9),
        "tokens_per_s_ratio_all_windows": rate(nw) / max(rate([w for r in runs for w in r]), 1e-9),
        "loss_ratio": net_final / local_final if net_final and local_final else None,
        "loss_ratio_step_matched": net_final / matched if net_final else None,
        "basis": "windows 1.. (the first window also covers the devnet's start-up)"
        if steady.start
        else "all windows",
        "equal_tokens": local_tokens == net_tokens,
        "tokens": {"one_process": local_tokens, "devnet": net_tokens},
        "tokens_per_s": {
            "one_process": rate(base),
            "one_process_runs": [rate(run[steady]) for run in runs],
            "devnet": rate(nw[steady]),
            "one_process_all": rate(lw),
            "devnet_all": rate(nw),
            "devnet_reported": net.get("tokens_per_s"),
        },
        "final_loss": {"one_process": local_final, "devnet": net_final},
        "loss_per_window": {
            "one_process": [w["loss"] for w in lw],
            "devnet": [w["loss"] for w in nw],
        },
    }
