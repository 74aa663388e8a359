"""The dashboard in a real browser: headless system Chromium driven by Playwright, against `aztrain dev`.

Every page is opened with a function key (`?code=`), as in Azure. Each test's page records its
console errors, uncaught exceptions and every request; a test fails if the page logged an error,
if any request went anywhere but the dev host, or if an API call went out without the key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.e2e.conftest import Stack, running_stack

CHROMIUM = Path("/usr/bin/chromium")
KEY = "browser-test-key"
#: Where screenshots go: docs/img when refreshing the README's (`make screenshots`), else a temporary folder.
SCREENSHOTS_ENV = "AZTRAIN_SCREENSHOTS"

# A dev host sharing two busy cores with its training jobs can take seconds to answer: wait, don't flake.
WAIT_MS = 20_000
expect.set_options(timeout=WAIT_MS)


@dataclass
class Dashboard:
    """A page on the dashboard, and what it did."""

    page: Page
    url: str
    shots: Path
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def open(self, view: str) -> Page:
        """Go to a view (`runs`, `runs/<id>`, `jobs?x=y`) of the dashboard, opened with the key."""
        self.page.goto(f"{self.url}/api/dashboard?code={KEY}#/{view}")
        return self.page

    def screenshot(self, name: str) -> None:
        """The whole page at its current width, as `<name>-<width>.png`."""
        width = self.page.viewport_size["width"] if self.page.viewport_size else 0
        self.page.screenshot(path=self.shots / f"{name}-{width}.png", full_page=True)

    def at_widths(self, name: str, widths: tuple[int, ...] = (1280, 390)) -> None:
        """Screenshots of the current view at each width (the README shows them)."""
        for width in widths:
            self.page.set_viewport_size({"width": width, "height": 900})
            self.screenshot(name)
        self.page.set_viewport_size({"width": 1280, "height": 900})


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The local stack as the e2e tests run it, stopped after these tests (one `aztrain dev` at a time)."""
    with running_stack(tmp_path_factory.mktemp("browser-stack")) as started:
        yield started


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `make setup` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        # Playwright's own browser download cannot work here: drive the system Chromium.
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get(SCREENSHOTS_ENV)
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def dashboard(browser: Browser, stack: Stack, shots: Path) -> Iterator[Dashboard]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    board = Dashboard(page=page, url=stack.url, shots=shots)

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            board.errors.append(f"console: {message.text} ({message.location.get('url')})")

    page.on("console", console)
    page.on("pageerror", lambda error: board.errors.append(f"uncaught: {error}"))
    page.on("request", lambda request: board.requests.append(request.url))
    try:
        yield board
    finally:
        context.close()
    assert not board.errors, board.errors
    assert board.requests
    host = urlsplit(stack.url).netloc
    assert [u for u in board.requests if urlsplit(u).netloc != host] == [], "a request left the machine"
    assert [u for u in board.requests if parse_qs(urlsplit(u).query).get("code") != [KEY]] == [], (
        "a request went without the function key"
    )
