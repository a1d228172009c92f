"""The dashboard's document: what a person watching a node sees, picked from `/status` and
`/peers` (pure; no I/O).

Fields are copied by name, never whole sections, so nothing the page does not show (revealed
audit secrets, store paths, wallet locations) reaches it. Sections follow the node's roles:
`run` and `stages` on an orchestrator, `miner` on a miner, `audits` and `pay` on a validator,
`emission` wherever the node follows a chain, `peers` everywhere. Values are plain JSON; the page
and the terminal view escape every string when they render it.
"""

from __future__ import annotations

from typing import Any

LOSS_POINTS = 512
"""Loss-curve points sent (the newest)."""


def dashboard_view(status: dict[str, Any], peers: dict[str, Any]) -> dict[str, Any]:
    uid_of = _uids(status)
    hotkey_of = {p["peer_id"]: p.get("hotkey") for p in status.get("admitted_peers", [])}
    view: dict[str, Any] = {
        "node": {
            k: status.get(k)
            for k in ("version", "roles", "run_id", "peer_id", "hotkey", "uptime_s")
        },
        "peers": _peers(status, peers),
    }
    store = status.get("store") or {}
    view["node"]["store"] = {"used": store.get("used"), "map_size": store.get("map_size")}
    if (orch := status.get("orchestrator")) is not None:
        view["run"] = _run(orch)
        view["stages"] = _stages(orch, uid_of, hotkey_of)
    if (miner := status.get("miner")) is not None:
        view["miner"] = _miner(miner)
    if (validator := status.get("validator")) is not None:
        view["audits"] = _audits(validator, uid_of, hotkey_of)
        view["pay"] = _pay(validator, uid_of, hotkey_of)
    if neurons := (status.get("chain") or {}).get("neurons"):
        view["emission"] = {
            "block": status["chain"].get("block"),
            "uids": [
                {k: n.get(k) for k in ("uid", "hotkey", "stake", "incentive", "emission")}
                for n in neurons
            ],
        }
    return view


def _uids(status: dict[str, Any]) -> dict[str, int]:
    """hotkey → uid from the chain section (a node following a chain, or the chain node)."""
    chain = status.get("chain") or {}
    return {n["hotkey"]: n["uid"] for n in chain.get("neurons", []) if "hotkey" in n}


def _who(peer: str, uid_of: dict[str, int], hotkey_of: dict[str, Any]) -> dict[str, Any]:
    hotkey = hotkey_of.get(peer)
    return {"peer_id": peer, "hotkey": hotkey, "uid": uid_of.get(hotkey) if hotkey else None}


def _run(orch: dict[str, Any]) -> dict[str, Any]:
    progress = orch.get("progress") or {}
    return {
        "window": orch.get("window"),
        "phase": orch.get("phase"),
        "windows_target": orch.get("windows_target"),
        "done": orch.get("done"),
        "model": (orch.get("spec") or {}).get("model"),
        "step": progress.get("step"),
        "loss": progress.get("loss"),
        "tokens": progress.get("tokens"),
        "tokens_per_s": progress.get("tokens_per_s"),
        "batches": orch.get("batches"),
        "loss_curve": (orch.get("loss_curve") or [])[-LOSS_POINTS:],
        "windows": [
            {
                "window": w.get("window"),
                "loss": w.get("loss"),
                "tokens_per_s": w.get("tokens_per_s"),
                "perplexity": {d: e.get("perplexity") for d, e in (w.get("eval") or {}).items()},
            }
            for w in orch.get("history") or []
        ],
    }


def _stages(
    orch: dict[str, Any], uid_of: dict[str, int], hotkey_of: dict[str, Any]
) -> dict[str, Any]:
    rates = orch.get("miner_rates") or {}
    versions = orch.get("miner_versions") or {}
    work = orch.get("work") or {}

    def row(m: dict[str, Any]) -> dict[str, Any]:
        peer = m["peer_id"]
        return {
            **_who(peer, uid_of, hotkey_of),
            **{k: m.get(k) for k in ("state", "capacity", "leases", "misses", "seen_s_ago")},
            "rate": rates.get(peer),
            "backward": (work.get(peer) or {}).get("backward", 0),
            "version": versions.get(peer),
        }

    return {
        "bottleneck": orch.get("bottleneck"),
        "stages": [
            {
                "stage": s["stage"],
                "capacity": s.get("capacity"),
                "hop_s": s.get("hop_s"),
                "miners": [row(m) for m in s.get("miners", [])],
            }
            for s in orch.get("stages", [])
        ],
        "standby": [row(m) for m in orch.get("standby", [])],
        "open_leases": orch.get("open_leases"),
        "merges": orch.get("merges"),
    }


def _miner(miner: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "stage",
        "standby",
        "model",
        "window",
        "optimizer_steps",
        "backward_passes",
        "inflight",
        "max_inflight",
        "compute_queue",
        "last_loss",
        "weights_version",
        "capacity",
    )
    return {
        **{k: miner.get(k) for k in keys},
        "compute_s": (miner.get("seconds") or {}).get("compute"),
        "refusals": miner.get("refusals") or {},
    }


def _audits(
    validator: dict[str, Any], uid_of: dict[str, int], hotkey_of: dict[str, Any]
) -> dict[str, Any]:
    timeline = validator.get("timeline") or {}
    audited = validator.get("audited") or {}
    return {
        "window": validator.get("window"),
        "verdicts": validator.get("verdicts") or {},
        "miners": [
            {
                **_who(miner, uid_of, hotkey_of),
                "counts": audited.get(miner, {}),
                "timeline": [
                    {"window": w, "outcome": outcome, "reason": reason}
                    for w, outcome, reason in timeline.get(miner, [])
                ],
            }
            for miner in sorted(set(timeline) | set(audited))
        ],
        "latest": [
            {k: v.get(k) for k in ("miner", "window", "stage", "outcome", "reason", "detail")}
            for v in validator.get("latest") or []
        ],
    }


def _pay(
    validator: dict[str, Any], uid_of: dict[str, int], hotkey_of: dict[str, Any]
) -> dict[str, Any]:
    scores = validator.get("scores") or {}
    quality = validator.get("quality") or {}
    weights = quality.get("weights") or {}
    standings = scores.get("standings") or {}
    setter = validator.get("weights") or {}
    return {
        "miners": [
            {
                **_who(miner, uid_of, hotkey_of),
                **{k: s.get(k) for k in ("work", "incentive", "escrow", "barred_through")},
                "weight": weights.get(miner),
            }
            for miner, s in sorted(standings.items())
        ],
        "set": {
            "last_block": setter.get("last_block"),
            "mechanism": setter.get("mechanism"),
            "weights": setter.get("weights") or {},
            "outcomes": setter.get("outcomes") or {},
        },
        "stage_weights": quality.get("stage_weights") or {},
    }


def _peers(status: dict[str, Any], peers: dict[str, Any]) -> dict[str, Any]:
    admitted = {p["peer_id"]: p for p in status.get("admitted_peers", [])}
    return {
        "connected": [
            {
                "peer_id": p.get("peer_id"),
                "direction": p.get("direction"),
                "connected_since": p.get("connected_since"),
                "admitted": p.get("peer_id") in admitted,
                "hotkey": (admitted.get(p.get("peer_id")) or {}).get("hotkey"),
                "roles": (admitted.get(p.get("peer_id")) or {}).get("roles", []),
            }
            for p in peers.get("connected", [])
        ],
        "admitted": len(admitted),
        "known": len(peers.get("known", [])),
        "refusals": status.get("refusals") or {},
    }
