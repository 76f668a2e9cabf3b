"""Settings fail loudly: a bad value or settings that disagree stop the platform from starting."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from notifications.checks import check_timeouts_agree
from project.env import env_bool, env_float, env_int, parse_providers


@pytest.mark.parametrize("raw", ["ture", "yes please", "2", "enabled"])
def test_a_mistyped_boolean_is_refused_naming_the_variable(monkeypatch: Any, raw: str) -> None:
    monkeypatch.setenv("SOME_FLAG", raw)
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG must be a boolean"):
        env_bool("SOME_FLAG", False)


@pytest.mark.parametrize(("raw", "expected"), [("TRUE", True), ("on", True), ("0", False),
                                               ("No", False), ("", True)])
def test_booleans_take_the_usual_spellings(monkeypatch: Any, raw: str, expected: bool) -> None:
    monkeypatch.setenv("SOME_FLAG", raw)
    assert env_bool("SOME_FLAG", True) is expected  # empty means unset: the default


def test_numbers_are_checked_for_form_and_range(monkeypatch: Any) -> None:
    monkeypatch.setenv("SOME_INT", "ten")
    with pytest.raises(ImproperlyConfigured, match="SOME_INT must be a whole number"):
        env_int("SOME_INT", 1)
    monkeypatch.setenv("SOME_INT", "0")
    with pytest.raises(ImproperlyConfigured, match="SOME_INT must be at least 1"):
        env_int("SOME_INT", 1, minimum=1)
    monkeypatch.setenv("SOME_FLOAT", "nan")
    with pytest.raises(ImproperlyConfigured, match="finite"):
        env_float("SOME_FLOAT", 1.0)


def manage_check(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("NOTIFY_", "Q_", "ANYMAIL_", "EMAIL_"))}
    return subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "check"],
        env={**clean, **env}, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize(("env", "text"), [
    ({"ANYMAIL_IGNORE_RECIPIENT_STATUS": "ture"}, "ANYMAIL_IGNORE_RECIPIENT_STATUS must be"),
    ({"NOTIFY_BATCH_SIZE": "0"}, "NOTIFY_BATCH_SIZE must be at least 1"),
    ({"Q_TIMEOUT": "20"}, "notifications.E001"),
    ({"NOTIFY_BREAKER_FAILURE_RATE": "50"}, "notifications.E004"),
    ({"NOTIFY_BREAKER_WINDOW": "5"}, "notifications.E005"),
    ({"EMAIL_BACKENDS": "primary"}, "EMAIL_PRIMARY_BACKEND"),
    ({"EMAIL_BACKENDS": "Primary!"}, "is not a provider name"),
    ({"EMAIL_BACKENDS": "a", "EMAIL_A_BACKEND": "x.y", "EMAIL_A_REQUESTS_TIMEOUT": "soon"},
     "EMAIL_A_REQUESTS_TIMEOUT must be a number"),
    ({"EMAIL_BACKENDS": "a", "EMAIL_A_BACKEND": "x.y", "EMAIL_A_REQUESTS_TIMEOUT": "40"},
     "notifications.E001"),
])
def test_the_platform_refuses_to_start_on_bad_settings(env: dict[str, str], text: str) -> None:
    result = manage_check(**env)

    assert result.returncode != 0
    assert text in result.stdout + result.stderr


def test_the_default_settings_pass_the_checks() -> None:
    result = manage_check()
    assert result.returncode == 0, result.stderr


def errors_with(settings: Any, **notify: Any) -> set[str]:
    settings.NOTIFY = {**settings.NOTIFY, **notify}
    return {e.id for e in check_timeouts_agree()}


def test_the_checks_name_each_disagreement(settings: Any) -> None:
    settings.EMAIL_TIMEOUT = 10
    settings.ANYMAIL = {"REQUESTS_TIMEOUT": (3.05, 27)}  # requests' (connect, read)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 60, "retry": 300}

    assert errors_with(settings, DRAIN_BUDGET_SECONDS=10, LEASE_SECONDS=120) == set()
    # 20 s budget + 30.05 s of requests timeout is past 80% of 60 s.
    assert errors_with(settings, DRAIN_BUDGET_SECONDS=20, LEASE_SECONDS=120) == {
        "notifications.E001"}
    assert errors_with(settings, DRAIN_BUDGET_SECONDS=10, LEASE_SECONDS=60) == {
        "notifications.E002"}
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "retry": 60}
    assert errors_with(settings, DRAIN_BUDGET_SECONDS=10, LEASE_SECONDS=120) == {
        "notifications.E003"}


def test_a_lane_override_of_the_timeout_is_checked_too(settings: Any) -> None:
    alt = {**settings.Q_CLUSTER["ALT_CLUSTERS"]}
    alt["bulk"] = {**alt["bulk"], "timeout": 600}
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "ALT_CLUSTERS": alt}

    messages = [e.msg for e in check_timeouts_agree()]

    assert any(m.startswith("Lane bulk") and "LEASE_SECONDS" in m for m in messages)
    assert any(m.startswith("Lane bulk") and "retry" in m for m in messages)
    assert not any(m.startswith("Lane transactional") for m in messages)


def test_each_provider_gets_its_backend_and_its_options_typed() -> None:
    providers = parse_providers({
        "EMAIL_BACKENDS": "primary, secondary",
        "EMAIL_PRIMARY_BACKEND": "anymail.backends.postmark.EmailBackend",
        "EMAIL_PRIMARY_SERVER_TOKEN": "tok",
        "EMAIL_PRIMARY_REQUESTS_TIMEOUT": "4.5",
        "EMAIL_SECONDARY_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_SECONDARY_PORT": "2525",
        "EMAIL_SECONDARY_USE_TLS": "yes",
        "EMAIL_HOST": "not a provider option",
    })

    assert providers == [
        {"NAME": "primary", "BACKEND": "anymail.backends.postmark.EmailBackend",
         "OPTIONS": {"server_token": "tok", "requests_timeout": 4.5}},
        {"NAME": "secondary", "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
         "OPTIONS": {"port": 2525, "use_tls": True}},
    ]
    assert parse_providers({}) == []


def test_a_provider_named_twice_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="twice"):
        parse_providers({"EMAIL_BACKENDS": "a,a", "EMAIL_A_BACKEND": "x.y"})


def test_no_secret_key_refuses_to_start_naming_it(tmp_path: Any) -> None:
    """No published default: without SECRET_KEY and without the key `make` generates for a
    checkout, nothing starts (it signs sessions and unsubscribe links)."""
    result = manage_check(SECRET_KEY="", VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "dev-insecure" not in result.stdout + result.stderr


def test_the_generated_key_of_the_checkout_is_used_when_none_is_set(tmp_path: Any) -> None:
    (tmp_path / "secret_key").write_text("a-random-key-made-by-make\n")
    code = ("import django; django.setup(); from django.conf import settings; "
            "print(settings.SECRET_KEY)")
    clean = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, capture_output=True, text=True,
        env={**clean, "VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "project.settings"},
        timeout=60)
    assert result.stdout.strip() == "a-random-key-made-by-make", result.stderr
