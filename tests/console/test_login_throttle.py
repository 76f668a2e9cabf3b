"""Password guessing on the admin login is locked out (django-axes) per username and address."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.factories import staff

pytestmark = pytest.mark.django_db

RIGHT = "pw"  # tests.factories.staff's password


def login(password: str, *, username: str = "olga", addr: str = "198.51.100.7") -> Any:
    return Client().post("/admin/login/?next=/admin/",
                         {"username": username, "password": password}, REMOTE_ADDR=addr)


def test_wrong_passwords_lock_that_user_from_that_address_and_no_one_else(settings: Any) -> None:
    staff("olga", "operators")
    staff("pia", "operators")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        answer = login("guess")
        assert answer.status_code == 200  # the form again, with its error
        assert b"Please enter the correct username and password" in answer.content

    locked = login("guess")
    assert locked.status_code == 429
    assert b"Too many failed logins" in locked.content
    # Now even the right password is refused from there ...
    assert login(RIGHT).status_code == 429
    # ... while the same user from another address, and another user from this one, log in.
    assert login(RIGHT, addr="203.0.113.5").status_code == 302
    assert login(RIGHT, username="pia").status_code == 302


def test_a_success_resets_the_count(settings: Any) -> None:
    staff("olga", "operators")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login("guess")
    assert login(RIGHT).status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login("guess").status_code == 200
    assert login(RIGHT).status_code == 302


def test_the_lockout_is_refused_through_the_admin_login_with_a_clear_page(settings: Any) -> None:
    staff("olga", "operators")
    settings.AXES_FAILURE_LIMIT = 2
    login("guess")
    page = login("guess").content.decode()
    assert "After 2 wrong passwords" in page
    assert "manage.py axes_reset" in page
