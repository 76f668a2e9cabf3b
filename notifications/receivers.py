"""Producer example: an in-process app that sends an event from a signal.

Creating a Django user sends `user.registered` in the same transaction as the INSERT of the user:
if that transaction rolls back, no message exists and nothing is sent (transactional outbox).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save


def user_registered(
    sender: type, instance: Any, created: bool, raw: bool = False, **kw: Any
) -> None:
    if not created or raw or not instance.email:
        return
    from notifications.models import EventType
    from notifications.services import notify

    if not EventType.objects.filter(key="user.registered", is_active=True).exists():
        return  # The platform is not set up yet (e.g. createsuperuser before demo data).
    notify(
        event="user.registered",
        to=instance.email,
        data={"username": instance.get_username(), "first_name": instance.first_name},
        idempotency_key=f"user.registered:{instance.pk}",
    )


def connect() -> None:
    post_save.connect(
        user_registered, sender=get_user_model(), dispatch_uid="notifications.user_registered"
    )
