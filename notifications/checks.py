"""System checks for settings that must agree with each other.

Each value may be fine on its own (project/env.py refuses those that are not) and still make the
platform lose its promises in combination. `manage.py check`, `qcluster` and `runserver` run
these and refuse to start on an Error.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register

# The drain's budget plus its longest single send must leave this share of the task timeout
# unused: the rest of a round (claim, render, record) and a loaded machine need room too.
TIMEOUT_HEADROOM = 0.8


def _seconds(timeout: Any) -> float:
    if isinstance(timeout, (tuple, list)):  # requests' (connect, read) form
        return sum(float(part) for part in timeout)
    return float(timeout)


def longest_send_seconds() -> float:
    """The longest one send may block: SMTP's EMAIL_TIMEOUT or Anymail's requests timeout, or
    a provider's own (EMAIL_<NAME>_TIMEOUT / EMAIL_<NAME>_REQUESTS_TIMEOUT)."""
    timeout: Any = getattr(settings, "ANYMAIL", {}).get("REQUESTS_TIMEOUT", settings.EMAIL_TIMEOUT)
    longest = max(float(settings.EMAIL_TIMEOUT), _seconds(timeout))
    for provider in getattr(settings, "EMAIL_PROVIDERS", None) or []:
        for option, value in provider["OPTIONS"].items():
            if option.endswith("timeout") and value is not None:
                longest = max(longest, _seconds(value))
    return longest


def _clusters() -> list[tuple[str, dict[str, Any]]]:
    """Each lane's effective django-q2 configuration (ALT_CLUSTERS override the base)."""
    base = {k: v for k, v in settings.Q_CLUSTER.items() if k != "ALT_CLUSTERS"}
    alt = settings.Q_CLUSTER.get("ALT_CLUSTERS", {})
    return [(lane, {**base, **alt.get(lane, {})}) for lane in settings.LANES]


@register("notifications")
def check_timeouts_agree(**kwargs: Any) -> list[Error | Warning]:
    errors: list[Error | Warning] = []
    notify = settings.NOTIFY
    budget = float(notify["DRAIN_BUDGET_SECONDS"])
    send = longest_send_seconds()
    lease = float(notify["LEASE_SECONDS"])
    for lane, conf in _clusters():
        timeout, retry = conf.get("timeout"), conf.get("retry")
        if timeout is None:
            continue
        if budget + send > TIMEOUT_HEADROOM * timeout:
            errors.append(Error(
                f"Lane {lane}: the drain budget ({budget:g} s) plus the longest send "
                f"({send:g} s) must stay under {TIMEOUT_HEADROOM:.0%} of the django-q2 timeout "
                f"({timeout} s), or a drain is killed mid-batch and its sends are repeated.",
                hint="Lower NOTIFY_DRAIN_BUDGET_SECONDS or EMAIL_TIMEOUT/ANYMAIL_REQUESTS_TIMEOUT,"
                     " or raise Q_TIMEOUT.",
                id="notifications.E001",
            ))
        if lease <= timeout:
            errors.append(Error(
                f"Lane {lane}: NOTIFY_LEASE_SECONDS ({lease:g}) must exceed the django-q2 "
                f"timeout ({timeout} s): a lease that expires while its drain still runs lets "
                "the sweeper hand a message that is being sent to another worker.",
                hint="Raise NOTIFY_LEASE_SECONDS or lower Q_TIMEOUT.",
                id="notifications.E002",
            ))
        if retry is not None and retry <= timeout:
            errors.append(Error(
                f"Lane {lane}: django-q2's retry ({retry} s) must exceed its timeout "
                f"({timeout} s): the ORM broker hands a task that is still running to a "
                "second worker after `retry` seconds.",
                hint="Raise Q_RETRY (default 5 x Q_TIMEOUT) or lower Q_TIMEOUT.",
                id="notifications.E003",
            ))
    if notify["BREAKER_FAILURE_RATE"] > 1:
        errors.append(Error(
            f"NOTIFY_BREAKER_FAILURE_RATE ({notify['BREAKER_FAILURE_RATE']:g}) is a share of "
            "the last sends: it must be at most 1, or the circuit breaker never opens.",
            hint="Use e.g. 0.5 for half of the last NOTIFY_BREAKER_WINDOW sends.",
            id="notifications.E004",
        ))
    if 0 < notify["BREAKER_WINDOW"] < notify["BREAKER_MIN_CALLS"]:
        errors.append(Error(
            f"NOTIFY_BREAKER_MIN_CALLS ({notify['BREAKER_MIN_CALLS']}) is above "
            f"NOTIFY_BREAKER_WINDOW ({notify['BREAKER_WINDOW']}): the window never holds that "
            "many sends, so the circuit breaker never opens.",
            hint="Raise NOTIFY_BREAKER_WINDOW, or set it to 0 to turn the breaker off.",
            id="notifications.E005",
        ))
    if notify["RETRY_BASE_SECONDS"] > notify["RETRY_CAP_SECONDS"]:
        errors.append(Warning(
            f"NOTIFY_RETRY_BASE_SECONDS ({notify['RETRY_BASE_SECONDS']:g}) is above "
            f"NOTIFY_RETRY_CAP_SECONDS ({notify['RETRY_CAP_SECONDS']:g}): every backoff is the "
            "cap, so retries are not exponential.",
            id="notifications.W001",
        ))
    return errors


# deploy/production.env marks every value to fill in with this word; copied as it is, each would
# be a secret anyone who read the file knows.
PLACEHOLDER = "CHANGE"
SECRETS = ("SECRET_KEY", "NOTIFY_METRICS_TOKEN", "ANYMAIL_WEBHOOK_SECRET")


@register("notifications", deploy=True)
def check_no_placeholder_secrets(**kwargs: Any) -> list[Error]:
    """`manage.py check --deploy`: no secret still holds deploy/production.env's placeholder."""
    values = {"SECRET_KEY": settings.SECRET_KEY,
              "NOTIFY_METRICS_TOKEN": settings.NOTIFY_METRICS["TOKEN"],
              "ANYMAIL_WEBHOOK_SECRET": settings.ANYMAIL.get("WEBHOOK_SECRET", "")}
    return [
        Error(f"{name} still holds the placeholder from deploy/production.env.",
              hint="Set it to a long random value (python3 -c 'import secrets; "
                   "print(secrets.token_urlsafe(40))').", id="notifications.E006")
        for name in SECRETS if PLACEHOLDER in str(values[name])
    ]
