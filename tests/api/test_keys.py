from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from notifications.models import ApiKey, Producer
from tests.api.conftest import event


def create_key(*args: str) -> str:
    out = StringIO()
    call_command("create_producer_key", *args, stdout=out)
    return out.getvalue()


def test_the_command_prints_a_working_token_alone_on_the_last_line(demo: None,
                                                                  no_wakeups: Any) -> None:
    output = create_key("shop", "--events", "order.placed,user.registered")

    token = output.strip().splitlines()[-1]
    producer = Producer.objects.get(name="shop")
    assert sorted(producer.allowed_event_types.values_list("key", flat=True)) == [
        "order.placed", "user.registered"]
    key = ApiKey.objects.get(producer=producer)
    assert token.startswith(f"ntf_{key.prefix}_") and token not in key.key_hash
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.post("/api/v1/events/", event(), format="json").status_code == 202


def test_a_second_key_rotates_without_breaking_the_first(demo: None) -> None:
    first = create_key("shop", "--events", "order.placed").strip().splitlines()[-1]
    second = create_key("shop").strip().splitlines()[-1]  # keeps its events
    assert first != second
    assert Producer.objects.get(name="shop").api_keys.count() == 2
    assert list(Producer.objects.get(name="shop").allowed_event_types.values_list(
        "key", flat=True)) == ["order.placed"]


@pytest.mark.parametrize(("args", "error"), [
    (["shop", "--events", "order.placed,nope.x"], "unknown event type\\(s\\): nope.x"),
    (["Not A Slug"], "must be a slug"),
    (["shop", "--events", ","], "--events is empty"),
])
def test_the_command_refuses_bad_input(demo: None, args: list[str], error: str) -> None:
    with pytest.raises(CommandError, match=error):
        create_key(*args)
    assert not ApiKey.objects.exists()


def test_operators_create_and_revoke_keys_in_the_admin(admin_client: Any, producer: Any,
                                                       no_wakeups: Any) -> None:
    response = admin_client.post(reverse("admin:notifications_producer_changelist"),
                                 {"action": "create_key", "_selected_action": [producer.pk]},
                                 follow=True)
    page = response.content.decode()
    token = page.split("it is not stored: ")[1].split("<")[0].strip()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.post("/api/v1/events/", event(), format="json").status_code == 202

    key = ApiKey.objects.get(producer=producer)
    admin_client.post(reverse("admin:notifications_apikey_changelist"),
                      {"action": "revoke", "_selected_action": [key.pk]})
    assert client.post("/api/v1/events/", event(), format="json").status_code == 401
    assert admin_client.get(reverse("admin:notifications_producer_change",
                                    args=[producer.pk])).status_code == 200


def test_narrowing_a_producers_scope_applies_at_once(api: APIClient, producer: Any) -> None:
    assert api.post("/api/v1/events/", event(), format="json").status_code == 202
    producer.allowed_event_types.remove(producer.allowed_event_types.get(key="order.placed"))
    assert api.post("/api/v1/events/", event(), format="json").status_code == 403
