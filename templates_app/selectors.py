"""Reads of templates and their versions."""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from notifications.models import EventType, Message
from templates_app.exceptions import NoActiveTemplateVersion
from templates_app.models import Template, TemplateVersion


def locale_candidates(locale: str) -> list[str]:
    """Locales to try, best first: "pt-BR" -> ["pt-BR", "pt", settings.LANGUAGE_CODE]."""
    language = locale.replace("_", "-").split("-", 1)[0]
    candidates: list[str] = []
    for candidate in (locale, language, settings.LANGUAGE_CODE):
        if candidate and candidate not in candidates:
            candidates.append(candidate)
    return candidates


def template_version_active(*, template: Template, locale: str) -> TemplateVersion:
    """The active version for `locale`, else for its language, else for the default language.

    On the enqueue hot path: one query fetches every candidate's active version (at most one per
    locale, by constraint) and the best is picked here.
    """
    candidates = locale_candidates(locale)
    # Through the related manager so version.template is `template` without another query.
    by_locale = {
        version.locale: version
        for version in template.versions.filter(is_active=True, locale__in=candidates)
    }
    for candidate in candidates:
        if candidate in by_locale:
            return by_locale[candidate]
    raise NoActiveTemplateVersion(template_key=template.key, locale=locale)


# --- the console: what an activation would affect, diffs, sample data -----------------------------

# Messages not finished yet: they will still be rendered, from the version they are pinned to.
QUEUED_STATUSES = ("pending", "retry", "processing")
BLAST_RADIUS_CAP = 10_000


def _queued_pinned(version_id: int) -> QuerySet[Message]:
    return Message.objects.filter(
        template_version_id=version_id, status__in=QUEUED_STATUSES).order_by()


def queued_pinned_count(*, version_id: int, cap: int = BLAST_RADIUS_CAP) -> int:
    """Queued messages pinned to a version, counted up to `cap` (one bounded index scan)."""
    return _queued_pinned(version_id)[:cap].count()


@dataclass(frozen=True)
class PinnedGroup:
    event_type: str
    lane: str
    count: int


@dataclass(frozen=True)
class BlastRadius:
    """Queued messages pinned to `replaced`, the version an activation would replace."""

    version: TemplateVersion
    replaced: TemplateVersion | None  # None: nothing active in that locale yet
    total: int  # at most `cap`; `capped` says there are more
    capped: bool
    cap: int
    groups: list[PinnedGroup]

    @property
    def total_label(self) -> str:
        return f"more than {self.cap:,}" if self.capped else f"{self.total:,}"

    @property
    def is_noop(self) -> bool:
        return self.replaced is not None and self.replaced.pk == self.version.pk


def template_version_blast_radius(
    *, version: TemplateVersion, cap: int | None = None
) -> BlastRadius:
    """What activating `version` would touch: the queued messages pinned to the version now
    active for its template and locale, per event type and lane.

    Nothing is rewritten by an activation (messages keep their pinned, immutable version); this is
    what the operator should know before the switch. One query reads at most `cap` + 1 rows of
    two small columns; PostgreSQL finds them through the status index (the queued rows are
    few beside the sent ones), so a million sent rows pinned to the version cost nothing, and the
    cap bounds a deep queue; beyond the cap the breakdown covers the first `cap` rows.
    """
    cap = BLAST_RADIUS_CAP if cap is None else cap
    replaced = (
        TemplateVersion.objects.select_related("template")
        .filter(template_id=version.template_id, locale=version.locale, is_active=True)
        .first()
    )
    if replaced is None or replaced.pk == version.pk:
        return BlastRadius(version=version, replaced=replaced, total=0, capped=False, cap=cap,
                           groups=[])
    rows = list(_queued_pinned(replaced.pk).values_list("event_type_id", "lane")[: cap + 1])
    capped = len(rows) > cap
    counts = Counter(rows[:cap])
    keys = dict(EventType.objects.filter(pk__in={et for et, _ in counts}).values_list("pk", "key"))
    groups = sorted(
        (PinnedGroup(event_type=keys.get(et, str(et)), lane=lane, count=n)
         for (et, lane), n in counts.items()),
        key=lambda g: (-g.count, g.event_type, g.lane),
    )
    return BlastRadius(version=version, replaced=replaced, total=min(len(rows), cap),
                       capped=capped, cap=cap, groups=groups)


@dataclass(frozen=True)
class FieldDiff:
    field: str
    label: str
    lines: list[str]  # unified diff lines, without trailing newlines; empty: identical


_LABELS = {"subject": "Subject", "html_body": "HTML", "text_body": "Text"}


def template_versions_diff(*, old: TemplateVersion, new: TemplateVersion) -> list[FieldDiff]:
    """A unified diff of subject, HTML and text from `old` to `new` (plain strings: the page
    escapes them)."""
    diffs = []
    for field, label in _LABELS.items():
        before, after = getattr(old, field) or "", getattr(new, field) or ""
        lines = list(difflib.unified_diff(
            before.splitlines(), after.splitlines(), fromfile=f"v{old.pk}", tofile=f"v{new.pk}",
            lineterm="", n=3,
        ))
        diffs.append(FieldDiff(field=field, label=label, lines=lines))
    return diffs


def template_event_types(*, template_id: int | None) -> list[EventType]:
    """Event types whose sample data a preview or test send can use: those of `template_id`
    first (the first one is the default), then every other one."""
    event_types = list(EventType.objects.select_related("template").order_by("key"))
    return sorted(event_types, key=lambda et: et.template_id != template_id)


def sample_data_for(
    *, event_type: EventType | None, to_email: str = "", to_name: str = ""
) -> dict[str, Any]:
    """The context a preview or test send renders with: the event type's sample data plus
    `recipient`, shaped like a real message's (notifications/content.py)."""
    data = event_type.sample_data if event_type is not None else {}
    data = data if isinstance(data, dict) else {}
    return {**data, "recipient": {"email": to_email or "recipient@example.com", "name": to_name}}


def template_version_previous(*, version: TemplateVersion) -> TemplateVersion | None:
    """The version of the same template and locale created just before `version`: what a
    rollback from it goes back to."""
    return (
        TemplateVersion.objects.select_related("template")
        .filter(template_id=version.template_id, locale=version.locale, pk__lt=version.pk)
        .order_by("-pk")
        .first()
    )
