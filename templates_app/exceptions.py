"""Errors raised by template compilation, rendering and version lookup."""

from __future__ import annotations


class TemplateCompileError(Exception):
    """A template source does not compile; raised before anything is saved.

    `field` is "subject", "html_body" or "text_body" and `line` is 1-based within that field, so
    the admin can put the message next to the right textarea.
    """

    def __init__(self, *, field: str, line: int, reason: str) -> None:
        self.field = field
        self.line = line
        self.reason = reason
        super().__init__(f"{field} line {line}: {reason}")


class TemplateRenderError(Exception):
    """A compiled template failed while rendering with a given context."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class NoActiveTemplateVersion(Exception):
    """No active version for the locale, its language, or the default language."""

    def __init__(self, *, template_key: str, locale: str) -> None:
        self.template_key = template_key
        self.locale = locale
        super().__init__(
            f"Template {template_key!r} has no active version for locale {locale!r} "
            "(nor for its language or the default language)."
        )
