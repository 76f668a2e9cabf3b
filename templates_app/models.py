"""Versioned email templates.

A Template is a stable key ("welcome") that event types point at. Its content lives in immutable
TemplateVersion rows: editing makes a new version, and exactly one version per locale is active.
Messages pin the version they were rendered from, so an edit never changes an email already queued.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Template(models.Model):
    key = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class TemplateVersion(models.Model):
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="versions")
    locale = models.CharField(max_length=16, default="en")
    subject = models.CharField(max_length=500)
    html_body = models.TextField()
    text_body = models.TextField(
        blank=True, help_text="Leave empty to derive the text part from the HTML."
    )
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["template", "locale", "-created_at", "-id"]
        permissions = [
            ("activate_templateversion", "Can activate a template version (or roll back)"),
            ("test_send_templateversion", "Can send a test email of a template version"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["template", "locale"],
                condition=models.Q(is_active=True),
                name="one_active_version_per_locale",
            )
        ]

    def __str__(self) -> str:
        return f"{self.template.key} [{self.locale}] v{self.pk}"
