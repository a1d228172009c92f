"""The dashboard in headless Chromium over a real network in one loop (an orchestrator, three
miners and a validator training and auditing): what the page shows, a clean console and a
screenshot kept in the test's temporary directory."""

from pathlib import Path

from node.roles.validator import ValidatorComponent
from tests.auditing.conftest import Network
from tests.auditing.test_audits import role, until_window
from tests.browser_kit import open_page, wait_until
from tests.mining.kit import endpoint, miner_of, wait_for


async def test_dashboard_shows_run_stages_audits_and_pay(network: Network, tmp_path: Path) -> None:
    net = network
    val = role(net.validator, ValidatorComponent)
    orch_id = endpoint(net.orchestrator).peer_id
    await wait_for(lambda: orch_id in endpoint(net.validator).sessions, 30, "validator admitted")
    await val.auditor.tick()  # commits before the run routes anything
    await until_window(net, 2)
    await wait_for(lambda: all(miner_of(m).state.stage is not None for m in net.miners), 30)
    await val.auditor.tick()
    verdicts = val.records.verdicts()
    assert verdicts, "the validator audited nothing"
    miners = {endpoint(m).peer_id for m in net.miners}

    async with open_page(f"{net.orchestrator.http_url}/") as browser:
        page = browser.page
        await wait_until(
            lambda: page.get_attribute("#loss-chart", "data-points"), what="the loss chart"
        )
        points = int(await page.get_attribute("#loss-chart", "data-points") or 0)
        assert points >= 2
        assert await page.locator("#loss-chart polyline").count() == 1
        cards = page.locator("#stage-map .miner-card")
        shown = {await cards.nth(i).get_attribute("data-peer") for i in range(await cards.count())}
        assert shown == miners
        for stage in range(3):
            column = page.locator(f'#stage-map .stage[data-stage="{stage}"] h3')
            assert (await column.inner_text()).startswith(f"stage {stage}")
        assert "optimizer step" in await page.inner_text("#run-tiles")
        assert await page.get_attribute("#link", "data-state") == "live"
        assert await page.locator("#audits").is_hidden()  # not a validator
        peers_note = await page.inner_text("#peers-note")
        assert peers_note.startswith("4 connected, 4 admitted")
        await page.screenshot(path=str(tmp_path / "orchestrator.png"), full_page=True)
        assert browser.errors == []

    async with open_page(f"{net.validator.http_url}/") as browser:
        page = browser.page
        cells = page.locator("#audit-timeline .cell[data-outcome]")
        await wait_until(cells.count, what="the audit timeline")
        outcomes = [
            await cells.nth(i).get_attribute("data-outcome") for i in range(await cells.count())
        ]
        assert len(outcomes) == len(verdicts) and set(outcomes) == {"pass"}
        assert await page.locator("#pay-table tbody tr").count() == len(miners)
        assert await page.locator("#run").is_hidden()  # not an orchestrator
        note = await page.inner_text("#audits-note")
        assert f"{len(verdicts)} pass, 0 fail" in note
        await page.screenshot(path=str(tmp_path / "validator.png"), full_page=True)
        assert browser.errors == []
    assert (tmp_path / "orchestrator.png").stat().st_size > 10_000
