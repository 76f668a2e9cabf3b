"""Writes of templates and their versions.

Versions are immutable: editing a template means creating a new version, and rolling back means
activating an older one. Nothing here updates a version's content.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django_q.tasks import async_task

from notifications import providers
from notifications.audit import audit_record
from notifications.models import AuditAction, EventType
from templates_app.exceptions import TemplateRenderError
from templates_app.models import Template, TemplateVersion
from templates_app.rendering import compile_check, render_version
from templates_app.selectors import queued_pinned_count, sample_data_for
from templates_app.signals import versions_changed

logger = logging.getLogger(__name__)


def _versions_changed(template_id: int) -> None:
    """Tell version caches now (this transaction's own reads) and on commit (everyone's)."""
    versions_changed.send(sender=TemplateVersion, template_id=template_id)
    transaction.on_commit(
        lambda: versions_changed.send(sender=TemplateVersion, template_id=template_id))


def _lock_template(template_id: int) -> None:
    # Serialises version writes per template (Postgres; SQLite's IMMEDIATE transactions already
    # serialise writers), so two concurrent activations cannot both pass the deactivate step and
    # then trip the one-active-version constraint.
    Template.objects.select_for_update().filter(pk=template_id).first()


def _version_write(
    *,
    template: Template,
    locale: str,
    subject: str,
    html_body: str,
    text_body: str,
    user: Any,
    activate: bool,
) -> TemplateVersion:
    """1. Compile every field; on failure nothing is written.
    2. In one transaction: deactivate the locale's active version (if `activate`), create this one.
    """
    compile_check(subject=subject, html_body=html_body, text_body=text_body)
    with transaction.atomic():
        if activate:
            _lock_template(template.pk)
            current = TemplateVersion.objects.filter(template=template, locale=locale)
            if current.filter(is_active=True).update(is_active=False):
                _versions_changed(template.pk)
        return TemplateVersion.objects.create(
            template=template,
            locale=locale,
            subject=subject,
            html_body=html_body,
            text_body=text_body,
            created_by=user if getattr(user, "pk", None) else None,
            is_active=activate,
        )


def template_version_create(
    *,
    template: Template,
    locale: str,
    subject: str,
    html_body: str,
    text_body: str = "",
    user: Any = None,
    activate: bool = True,
) -> TemplateVersion:
    """Create a version, after checking that it compiles (raises TemplateCompileError), and
    audit it (TEMPLATE_EDIT, plus TEMPLATE_ACTIVATE when it replaces an active version).

    Messages queued with the version it replaces keep rendering from that one.
    """
    with transaction.atomic():
        replaced = _active_id(template_id=template.pk, locale=locale) if activate else None
        pinned = _pinned(replaced)
        version = _version_write(
            template=template, locale=locale, subject=subject, html_body=html_body,
            text_body=text_body, user=user, activate=activate,
        )
        audit_record(
            user=user, action=AuditAction.TEMPLATE_EDIT, target=str(version),
            filter={"template": template.key, "locale": locale, "version": version.pk,
                    "activated": activate, "replaced": replaced},
        )
        if activate:
            _audit_activation(version=version, replaced=replaced, pinned=pinned, user=user,
                              reason="")
    return version


def template_create(
    *,
    key: str,
    description: str = "",
    locale: str = "en",
    subject: str,
    html_body: str,
    text_body: str = "",
    created_by: Any = None,
) -> Template:
    """Create a template with its first, active version (raises TemplateCompileError)."""
    compile_check(subject=subject, html_body=html_body, text_body=text_body)
    with transaction.atomic():
        template = Template(key=key, description=description)
        template.full_clean()  # slug format and key uniqueness, as a ValidationError
        template.save()
        # Not audited: a new template has no messages, and seed_demo and tests call this.
        _version_write(
            template=template,
            locale=locale,
            subject=subject,
            html_body=html_body,
            text_body=text_body,
            user=created_by,
            activate=True,
        )
    return template


def _pinned(version_id: int | None) -> int:
    # How many queued messages stay pinned to the replaced version, as the confirmation page
    # showed it (capped: the count must stay cheap with a million rows).
    return 0 if version_id is None else queued_pinned_count(version_id=version_id)


def _active_id(*, template_id: int, locale: str) -> int | None:
    return (
        TemplateVersion.objects.filter(template_id=template_id, locale=locale, is_active=True)
        .values_list("pk", flat=True)
        .first()
    )


def _audit_activation(
    *, version: TemplateVersion, replaced: int | None, pinned: int, user: Any, reason: str
) -> None:
    audit_record(
        user=user, action=AuditAction.TEMPLATE_ACTIVATE, target=str(version), reason=reason,
        filter={"template": version.template.key, "locale": version.locale,
                "version": version.pk, "replaced": replaced,
                "queued_pinned_to_replaced": pinned},
    )


def template_version_activate(
    *, version: TemplateVersion, user: Any = None, reason: str = ""
) -> TemplateVersion:
    """Make `version` the active one for its locale (e.g. roll back to an older version), and
    audit it (TEMPLATE_ACTIVATE). Already active: nothing is written or audited.

    Messages already queued are not touched: they keep their pinned version (versions are
    immutable); only messages queued from now on get `version`.
    """
    with transaction.atomic():
        _lock_template(version.template_id)
        replaced = _active_id(template_id=version.template_id, locale=version.locale)
        if replaced == version.pk:
            version.is_active = True
            return version
        _audit_activation(version=version, replaced=replaced, pinned=_pinned(replaced),
                          user=user, reason=reason)
        siblings = TemplateVersion.objects.filter(
            template_id=version.template_id, locale=version.locale
        ).exclude(pk=version.pk)
        siblings.filter(is_active=True).update(is_active=False)
        TemplateVersion.objects.filter(pk=version.pk).update(is_active=True)
        _versions_changed(version.template_id)
    version.is_active = True
    return version


# --- test sends ---------------------------------------------------------------------------------

TEST_SEND_TASK = "templates_app.tasks.send_test_email"
TEST_SEND_CLUSTER = "transactional"  # a test send is one email someone is waiting for


def template_version_test_send(
    *, version: TemplateVersion, to_email: str, event_type: EventType | None, user: Any
) -> None:
    """Audit a test send (TEMPLATE_TEST_SEND) and hand it to a django-q2 task on commit: the
    provider call happens in the transactional cluster, never in the web request."""
    audit_record(
        user=user, action=AuditAction.TEMPLATE_TEST_SEND, target=str(version), count=1,
        filter={"to": to_email, "event_type": event_type.key if event_type else None,
                "version": version.pk},
    )
    args = (version.pk, to_email, event_type.pk if event_type else None)
    transaction.on_commit(
        lambda: async_task(TEST_SEND_TASK, *args, cluster=TEST_SEND_CLUSTER,
                           group="template-test-send"))


def template_test_email_build(
    *, version: TemplateVersion, to_email: str, event_type: EventType | None
) -> EmailMultiAlternatives:
    """The test email: `version` rendered with the event type's sample data (raises
    TemplateRenderError), marked as a test in its subject and headers."""
    rendered = render_version(version, sample_data_for(event_type=event_type, to_email=to_email))
    email = EmailMultiAlternatives(
        subject=f"[Test] {rendered.subject}",
        body=rendered.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to_email],
        headers={"X-Template-Version": str(version.pk), "X-Notification-Test": "1"},
    )
    email.attach_alternative(rendered.html, "text/html")
    return email


def template_test_email_send(
    *, version: TemplateVersion, to_email: str, event_type: EventType | None
) -> dict[str, Any]:
    """Send one test email through the preferred configured provider (notifications/providers.py).

    No retries, breaker or rate: an operator is watching and can press the button again.
    """
    provider = providers.configured()[0]
    try:
        email = template_test_email_build(version=version, to_email=to_email, event_type=event_type)
    except TemplateRenderError as exc:
        logger.warning("test send of %s did not render: %s", version, exc)
        return {"sent": False, "error": str(exc)}
    connection = provider.connection()
    try:
        sent = connection.send_messages([email]) or 0
    except Exception as exc:
        logger.exception("test send of %s to %s through %s failed", version, to_email,
                         provider.name)
        return {"sent": False, "provider": provider.name, "error": f"{type(exc).__name__}: {exc}"}
    return {"sent": bool(sent), "provider": provider.name, "version": version.pk}
