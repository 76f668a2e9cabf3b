"""Signals templates_app sends for writes Django's model signals do not see.

Activating a version is a queryset `.update()` (no post_save), yet every cache of "the active
version" must forget at once: `versions_changed` is sent after each such write, and again when its
transaction commits. Whoever caches versions connects to it; templates_app knows none of them.
"""

from __future__ import annotations

from django.dispatch import Signal

# Sent with sender=TemplateVersion and template_id=<the template whose versions changed>.
versions_changed = Signal()
