"""What a message says: its pinned template version rendered with its data, at send time.

A Message stores the producer's data and the template version chosen when it was queued, not the
rendered email. Versions are immutable, so rendering later gives what rendering at enqueue would
have given, and the queue row stays small: ingest writes ~300 bytes instead of the whole email,
and the rendering cost moves from the producer's request to the drain, which has the headroom.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from notifications.models import Message
from templates_app.models import TemplateVersion
from templates_app.rendering import RenderedEmail, render_subject, render_version


def message_context(message: Message) -> dict[str, Any]:
    """The template context: the event data plus `recipient`."""
    data = message.data if isinstance(message.data, dict) else {}
    return {**data, "recipient": {"email": message.to_email, "name": message.to_name}}


def versions_for(messages: Iterable[Message]) -> dict[int, TemplateVersion]:
    """The template versions `messages` are pinned to, with one query."""
    return TemplateVersion.objects.in_bulk({m.template_version_id for m in messages})


def message_render(message: Message, version: TemplateVersion | None = None) -> RenderedEmail:
    """Render `message`; raises TemplateRenderError (the drain turns it into a dead letter)."""
    return render_version(version or message.template_version, message_context(message))


def message_subject(message: Message) -> str | None:
    """Just the subject (cheap), or None when it does not render."""
    return render_subject(message.template_version, message_context(message))
