"""Headless Chromium for the dashboard tests: the system browser driven by Playwright's async API
in the test's own event loop. Playwright never downloads a browser here; `.ci/run` installs
Debian's `chromium`. Without one the browser tests are skipped, except under CI, where they fail."""

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright

CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium() -> str:
    """The system Chromium's binary (TESSERA_CHROMIUM overrides)."""
    for path in (os.environ.get("TESSERA_CHROMIUM", ""), *CANDIDATES):
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("no Chromium: .ci/run installs Debian's chromium package")
    pytest.skip("no system Chromium (apt-get install chromium)")


@dataclass
class Browser:
    page: Page
    errors: list[str] = field(default_factory=list)


@asynccontextmanager
async def open_page(url: str) -> AsyncIterator[Browser]:
    """A page at `url`; `errors` collects console errors and uncaught exceptions."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium())
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            found = Browser(page)
            page.on("console", lambda m: found.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: found.errors.append(str(e)))
            await page.goto(url)
            yield found
        finally:
            await browser.close()


async def wait_until(check, timeout: float = 30.0, what: str = "the page"):
    """Polls the async `check()` until it returns a truthy value (the page's CSP forbids the
    string evaluation `page.wait_for_function` needs)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
