"""Debian's Chromium under Playwright's sync API: one launch and one login for the browser tests
and for `make screenshots`.

Playwright's own browser builds are never downloaded (`playwright install` is not run): the
Debian package's binary is launched by path, so .ci/run only needs `apt-get install chromium`.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, Page, Playwright, expect

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox: CI and the developers' machines run as root, where Chromium's sandbox refuses to
# start. No GPU (headless, none there). No background networking: the browser must not call out.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 800}
# A page that has not shown what a test waits for within this is a failure, not a long wait.
TIMEOUT_MS = 10_000


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def new_page(browser: Browser, base_url: str) -> Page:
    """A page in a fresh context: its own cookies (so its own session), 1280x800, relative
    URLs resolved against `base_url`."""
    context = browser.new_context(base_url=base_url, viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def admin_login(page: Page, username: str, password: str) -> None:
    """Log in through the real admin login form and wait for the admin index to greet the user."""
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    expect(page).to_have_url(re.compile(r"/admin/$"))
    expect(page.locator("#user-tools")).to_contain_text(username)
