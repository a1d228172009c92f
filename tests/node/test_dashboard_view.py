"""The dashboard document and its terminal rendering (pure): sections by role, nothing secret,
and text that fits 100 columns with peers' control characters neutralised."""

import json
from typing import Any

from node.dashboard.text import render_text
from node.dashboard.view import dashboard_view

PEER = "12D3KooWAbCdEfGhIjKlMnOpQrStUvWxYz"


def validator_status() -> dict[str, Any]:
    return {
        "version": "0.1.0",
        "roles": ["validator"],
        "run_id": "devnet",
        "peer_id": "12D3KooWself",
        "hotkey": "5Self",
        "uptime_s": 61.0,
        "store": {"path": "/srv/tessera/store", "used": 2**20, "map_size": 2**30},
        "admitted_peers": [{"peer_id": PEER, "hotkey": "5Miner\x1b[2J", "roles": ["miner"]}],
        "refusals": {"bad_signature": 2},
        "chain": {"block": 40, "neurons": [{"uid": 3, "hotkey": "5Miner\x1b[2J", "stake": 0.0}]},
        "validator": {
            "window": 9,
            "commitments": {"8": {"secret": "s3cr3t", "commitment": "c0ffee"}},
            "verdicts": {"pass": 2, "fail": 1, "inconclusive": 0},
            "audited": {PEER: {"pass": 2, "fail": 1, "inconclusive": 0}},
            "timeline": {PEER: [[6, "pass", "ok"], [7, "pass", "ok"], [8, "fail", "bad_loss"]]},
            "latest": [{"miner": PEER, "window": 8, "outcome": "fail", "reason": "bad_loss"}],
            "scores": {"standings": {PEER: {"work": 16, "incentive": 0.0, "barred_through": 158}}},
            "weights": {"last_block": 38, "weights": {"3": 1.0}, "outcomes": {"ok": 1}},
        },
    }


def test_sections_follow_roles_and_show_no_secret() -> None:
    view = dashboard_view(validator_status(), {"connected": [{"peer_id": PEER}], "known": []})
    assert set(view) == {"node", "peers", "audits", "pay", "emission"}
    text = json.dumps(view)
    assert "s3cr3t" not in text and "c0ffee" not in text and "/srv/tessera" not in text
    (miner,) = view["audits"]["miners"]
    assert (miner["uid"], miner["counts"]["fail"]) == (3, 1)
    assert [t["outcome"] for t in miner["timeline"]] == ["pass", "pass", "fail"]
    assert view["pay"]["miners"][0]["barred_through"] == 158
    assert view["pay"]["set"]["weights"] == {"3": 1.0}
    assert view["peers"]["connected"][0]["admitted"] is True


def test_orchestrator_view_has_run_and_stage_map() -> None:
    status = {
        "roles": ["orchestrator"],
        "orchestrator": {
            "window": 2,
            "progress": {"step": 4, "loss": 5.1},
            "loss_curve": [[1, 6.0], [2, 5.5]],
            "history": [{"window": 0, "loss": 6.0, "eval": {"code": {"perplexity": 400.0}}}],
            "stages": [{"stage": 0, "miners": [{"peer_id": PEER, "state": "active"}]}],
            "bottleneck": 0,
            "miner_rates": {PEER: 2.5},
            "miner_versions": {PEER: "abc"},
        },
    }
    view = dashboard_view(status, {})
    assert view["run"]["loss_curve"] == [[1, 6.0], [2, 5.5]]
    assert view["run"]["windows"][0]["perplexity"] == {"code": 400.0}
    (row,) = view["stages"]["stages"][0]["miners"]
    assert (row["rate"], row["version"], row["state"]) == (2.5, "abc", "active")
    assert "audits" not in view and "miner" not in view


def test_text_fits_100_columns_without_control_characters() -> None:
    view = dashboard_view(validator_status(), {"connected": [{"peer_id": PEER}], "known": []})
    text = render_text(view, width=100)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "\x1b" not in text
    assert lines[0].startswith("NODE  validator · run devnet · peer 12D3KooWself")
    assert any(line.startswith("AUDITS  through window 9: 2 pass, 1 fail") for line in lines)
    assert any("✓✓✗" in line for line in lines)
    assert any(line.strip().startswith("fail 12D3KooW…UvWxYz window 8: bad_loss") for line in lines)
    narrow = render_text(view, width=60)
    assert max(len(line) for line in narrow.splitlines()) <= 60
