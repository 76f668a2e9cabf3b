from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from notifications.content import message_subject
from notifications.flow import ProviderFlow
from notifications.models import EventType, Message
from notifications.services import notify
from notifications.transitions import TRANSITIONS

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_it_prints_depth_per_lane_and_status_and_the_oldest_due_age() -> None:
    for n in range(3):
        notify(event="order.placed", to=f"u{n}@example.com",
               data={"order_id": n, "total": "1", "items": []})
    notify(event="marketing.newsletter", to="r@example.com", data={"headline": "h", "body": "b"})

    lines = run("notifications_stats").splitlines()

    assert lines[0].split()[:3] == ["lane", "pending", "processing"]
    transactional = next(line for line in lines if line.startswith("transactional")).split()
    bulk = next(line for line in lines if line.startswith("bulk")).split()
    assert transactional[1] == "3" and transactional[-2] == "3"  # pending, due
    assert transactional[-1].endswith("s")  # oldest due age in seconds
    assert bulk[1] == "1"


def test_it_prints_each_providers_breaker(settings: Any) -> None:
    settings.NOTIFY = {**settings.NOTIFY, "BREAKER_MIN_CALLS": 2, "BREAKER_PAUSE_SECONDS": 30}
    ProviderFlow("default").report([True, True])

    lines = run("notifications_stats").splitlines()

    default = next(line for line in lines if line.startswith("default")).split()
    assert default[1] == "open" and 29 < float(default[2].rstrip("s")) <= 30
    assert default[4] == "1"  # trips


def test_it_prints_the_lifecycle_diagram_from_the_transition_table() -> None:
    diagram = run("lifecycle_diagram")

    assert diagram.startswith("stateDiagram-v2")
    for name, transition in TRANSITIONS.items():
        for source in transition.sources:
            assert f"{source.value} --> {transition.target.value}: {name}" in diagram


def test_send_event_queues_a_message() -> None:
    out = run("send_event", "password.reset", "ann@example.com",
              "--data", '{"reset_url": "https://example.com/r"}')

    message = Message.objects.get()
    assert f"queued message {message.pk}" in out
    assert message_subject(message) == "Reset your password"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["nope.event", "a@example.com"], "event: unknown event 'nope.event'"),
        (["password.reset", "a@example.com", "--data", "{oops"], "--data is not valid JSON"),
        (["password.reset", "a@example.com", "--data", "{}"],
         "data: $: 'reset_url' is a required property"),
        (["password.reset", "nobody"], "to: 'nobody' is not a valid email address"),
    ],
)
def test_send_event_refuses_bad_input_with_a_command_error(args: list[str], error: str) -> None:
    with pytest.raises(CommandError, match=error.replace("$", r"\$").replace("'", "'")):
        run("send_event", *args)
    assert Message.objects.count() == 0


def test_seed_demo_is_idempotent() -> None:
    before = EventType.objects.count()
    run("seed_demo")
    run("seed_demo")
    assert EventType.objects.count() == before == 4
    reset = EventType.objects.get(key="password.reset")
    assert (reset.lane, reset.priority, reset.expiry.total_seconds()) == ("transactional", 0, 3600)
    assert EventType.objects.get(key="marketing.newsletter").lane == "bulk"


def settings_in_subprocess(env: dict[str, str], expr: str) -> str:
    code = f"import django; django.setup(); from django.conf import settings as s; print({expr})"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, capture_output=True, text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", **env}, check=True,
    )
    return out.stdout.strip()


def test_every_anymail_variable_reaches_the_anymail_settings() -> None:
    env = {"ANYMAIL_POSTMARK_SERVER_TOKEN": "x", "ANYMAIL_POSTMARK_API_URL": "http://127.0.0.1:9/",
           "ANYMAIL_REQUESTS_TIMEOUT": "2.5", "ANYMAIL_IGNORE_RECIPIENT_STATUS": "true"}

    printed = settings_in_subprocess(env, "sorted(s.ANYMAIL.items())")

    assert printed == str(sorted({
        "POSTMARK_SERVER_TOKEN": "x", "POSTMARK_API_URL": "http://127.0.0.1:9/",
        "REQUESTS_TIMEOUT": 2.5, "IGNORE_RECIPIENT_STATUS": True,
    }.items()))


def test_redis_url_selects_the_redis_broker(tmp_path: Any) -> None:
    with_redis = settings_in_subprocess({"REDIS_URL": "redis://127.0.0.1:6379/3"},
                                        "(s.Q_CLUSTER.get('redis'), s.Q_CLUSTER.get('orm'))")
    assert with_redis == "('redis://127.0.0.1:6379/3', None)"
    without = settings_in_subprocess({"REDIS_URL": ""}, "(s.Q_CLUSTER.get('orm'))")
    assert without == "default"
