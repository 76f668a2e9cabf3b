"""Browser tests: Playwright's sync API driving Debian's Chromium against the platform served by
pytest-django's `live_server`.

Why `live_server` (a thread of this process) and not the platform in a subprocess:

- It serves the test database of this run, on SQLite (a file, settings.DATABASES TEST NAME) and
  on PostgreSQL alike, with nothing to pass along; with it the tests use `transactional_db`, so
  what a test commits the server sees, and what the server writes the test reads back.
- Settings changed by a test reach the server (same process): a fast password hasher, and the
  wake-ups recorded by `no_wakeups` instead of queued for django-q2.
- Nothing to start, wait for or kill per run; the server lives for the session.

tests/conftest.py's `demo` asks for `db`; pytest-django makes that transactional whenever the
test also uses `live_server` or `transactional_db`, so the demo rows are committed and the
server sees them. Each test ends with a flush; the migration's groups come back with it (the
post_migrate handler in notifications/roles.py), so `olga` and `vic` are made per test.

Why DJANGO_ALLOW_ASYNC_UNSAFE is set while the browser is open (and only then): between two
calls, Playwright's sync API leaves its private event loop marked as running in this thread
(playwright/_impl/_greenlets.py, wait_for_future), so Django's guard takes every ORM call of
the test for a call from async code and raises SynchronousOnlyOperation. No coroutine of ours
runs: the loop only turns inside a Playwright call, and the test's ORM calls happen between
them. For the same reason the browser is package-scoped rather than session-scoped: when the
last browser test ends, Playwright stops, which clears that mark, so the tests collected after
this package run as if no browser had been here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from notifications.roles import OPERATORS, VIEWERS
from tests.browser import seed

# Real qcluster processes against the test database, stopped when each test ends (for the tests
# that watch an operation run): the e2e tests' fixtures, not a copy of them.
from tests.e2e.conftest import own_clusters, start_cluster  # noqa: F401

# .ci/run installs Chromium and sets this: in CI a missing browser is a failure, not a skip.
REQUIRED_ENV = "BROWSER_TESTS_REQUIRED"


def _chromium_or_skip() -> None:
    from tests.browser.chromium import CHROMIUM

    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing (apt-get install chromium)"
    if os.environ.get(REQUIRED_ENV):
        pytest.fail(f"{message}, and {REQUIRED_ENV} is set (CI installs it).")
    pytest.skip(f"{message}; .ci/run installs it and runs these tests.")


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One headless Chromium for the package (see the module docstring for why not session)."""
    _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    from tests.browser.chromium import launch

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # why: the module docstring
        with sync_playwright() as playwright:
            chromium = launch(playwright)
            yield chromium
            chromium.close()


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    """A fresh context (no cookies) and page per test, relative URLs on the live server."""
    from tests.browser.chromium import new_page

    page = new_page(browser, live_server.url)
    yield page
    page.context.close()


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    """Logging in through the form checks a password hash each time; the default hasher would
    spend most of a test's time on it."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def olga(transactional_db: Any) -> User:
    """An operator: may requeue, cancel, edit templates."""
    return seed.console_user("olga", OPERATORS)


@pytest.fixture
def vic(transactional_db: Any) -> User:
    """A viewer: reads everything, changes nothing."""
    return seed.console_user("vic", VIEWERS)


@pytest.fixture
def login(page: Any) -> Callable[[Any, User], None]:
    """`login(page, user)`: through the admin's login form, as a person would."""
    from tests.browser.chromium import admin_login

    def login(page: Any, user: User) -> None:
        admin_login(page, user.get_username(), seed.PASSWORD)

    return login
