"""What a message says: its pinned template version rendered with its data, at send time.

A Message stores the producer's data and the template version chosen when it was queued, not the
rendered email. Versions are immutable, so rendering later gives what rendering at enqueue would
have given, and the queue row stays small: ingest writes ~300 bytes instead of the whole email,
and the rendering cost moves from the producer's request to the drain, which has the headroom.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from notifications import lookups, unsubscribe
from notifications.models import Message
from templates_app.models import TemplateVersion
from templates_app.rendering import RenderedEmail, render_subject, render_version


def message_context(message: Message) -> dict[str, Any]:
    """The template context: the event data plus `recipient`, and for bulk mail that honours
    unsubscribes (unsubscribe.offers_unsubscribe) `unsubscribe_url` (the same link as its
    List-Unsubscribe header, for a footer; it replaces a producer's own, which our suppression
    list would not honour). Exempt mail gets none, so a footer under `{% if unsubscribe_url %}`
    disappears with it."""
    data = message.data if isinstance(message.data, dict) else {}
    context = {**data, "recipient": {"email": message.to_email, "name": message.to_name}}
    if unsubscribe.offers_unsubscribe(message):
        context["unsubscribe_url"] = unsubscribe.url_for(message)
    return context


def versions_for(messages: Iterable[Message]) -> dict[int, TemplateVersion]:
    """The template versions `messages` are pinned to: from the lookups cache (versions are
    immutable), the missing ones with one query. A transactional drain renders a claim of one or
    two emails at a time; reading the version each time was a tenth of its CPU."""
    ids = {m.template_version_id for m in messages}
    found = {pk: v for pk in ids if (v := lookups.peek("template_version", pk)) is not None}
    missing = ids - found.keys()
    if missing:
        loaded = TemplateVersion.objects.in_bulk(missing)
        for pk, version in loaded.items():
            lookups.put("template_version", pk, version)
        found.update(loaded)
    return found


def message_render(message: Message, version: TemplateVersion | None = None) -> RenderedEmail:
    """Render `message`; raises TemplateRenderError (the drain turns it into a dead letter)."""
    return render_version(version or message.template_version, message_context(message))


def message_subject(message: Message) -> str | None:
    """Just the subject (cheap), or None when it does not render."""
    return render_subject(message.template_version, message_context(message))
