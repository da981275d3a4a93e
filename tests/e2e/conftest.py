"""The browser for the end-to-end tests: Debian's chromium (`make browser`) driven by Playwright, headless,
with nothing reaching past 127.0.0.1 (Playwright cannot download its own browsers here)."""

import os
from pathlib import Path

import pytest

from drawai.bench import BROWSER_ARGS, CHROMIUM


@pytest.fixture(scope="module")
def browser():
    import playwright.sync_api as playwright  # a dev dependency: missing it is a broken install, not a skip

    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is missing (`make browser` installs Debian's chromium)"
        if os.environ.get("CI"):  # in CI the browser tests must run
            pytest.fail(missing)
        pytest.skip(missing)
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        yield launched
        launched.close()
