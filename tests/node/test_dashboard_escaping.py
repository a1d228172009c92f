"""The page renders what peers control as text: markup in hotkeys, roles, refusal reasons and
verdict reasons shows literally, creates no element and runs nothing (headless Chromium)."""

import asyncio
from pathlib import Path
from typing import Any

from node.dashboard.feed import DashboardConfig, DashboardFeed
from node.dashboard.view import dashboard_view
from node.metrics import NodeMetrics
from node.service import run_service
from node.status_http import HttpConfig, StatusServer, build_app
from tests.browser_kit import open_page, wait_until

IMG = '<img src=x onerror="window.pwned=1">'
SCRIPT = "<script>window.pwned=2</script>"


def hostile_status() -> dict[str, Any]:
    peer = "12D3KooW" + SCRIPT
    return {
        "version": "0.1.0",
        "roles": ["validator"],
        "run_id": SCRIPT,
        "peer_id": "12D3KooWself",
        "hotkey": IMG,
        "uptime_s": float("nan"),
        "admitted_peers": [{"peer_id": peer, "hotkey": IMG, "roles": [IMG]}],
        "refusals": {IMG: 3},
        "validator": {
            "window": 4,
            "verdicts": {"pass": 0, "fail": 1, "inconclusive": 0},
            "audited": {peer: {"pass": 0, "fail": 1, "inconclusive": 0}},
            "timeline": {peer: [[3, "fail", IMG]]},
            "latest": [],
            "scores": {"standings": {peer: {"work": 8, "incentive": float("inf")}}},
        },
    }


def hostile_peers() -> dict[str, Any]:
    peer = "12D3KooW" + SCRIPT
    return {"connected": [{"peer_id": peer, "direction": IMG}], "known": []}


async def test_markup_from_peers_is_shown_as_text(tmp_path: Path) -> None:
    feed = DashboardFeed(
        DashboardConfig(interval_s=0.2), lambda: dashboard_view(hostile_status(), hostile_peers())
    )
    metrics = NodeMetrics(roles=["validator"], peer_id="12D3KooWself")
    app = build_app(status=hostile_status, peers=hostile_peers, metrics=metrics, dashboard=feed)
    server = StatusServer(HttpConfig(listen="127.0.0.1:0"), app)
    await server.start()
    feeding = asyncio.create_task(run_service(feed))
    try:
        async with open_page(f"{server.url}/") as browser:
            page = browser.page
            await wait_until(
                lambda: page.locator("#audit-timeline .cell[data-outcome]").count(),
                what="the timeline",
            )
            assert await page.locator("img").count() == 0
            assert await page.locator("main script, header script").count() == 0
            assert await page.evaluate("() => window.pwned") is None
            assert IMG in await page.inner_text("#refusals-table")
            assert SCRIPT in await page.inner_text("#identity")
            cell = page.locator("#audit-timeline .cell[data-outcome]").first
            assert IMG in (await cell.get_attribute("title") or "")
            assert "NaN" not in await page.inner_text("#pay-table")  # inf sent as null, shown "-"
            assert browser.errors == []
    finally:
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
        await server.close()
