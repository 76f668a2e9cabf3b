"""The dead letter list's filters. Each query-string parameter is a DeadLetterFilter field, so
the list, the grouped view, the confirmation page, the CSV export and the command all read a
filter the same way (`filter_from_request`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from dlq.selectors import DeadLetterFilter, InvalidFilter
from notifications.models import DeadReason, EventType

# `died` presets: a relative window, turned into `since` when a filter is taken from a request.
DIED = {"1h": ("Last hour", timedelta(hours=1)), "24h": ("Last 24 hours", timedelta(days=1)),
        "7d": ("Last 7 days", timedelta(days=7)), "30d": ("Last 30 days", timedelta(days=30))}
FILTER_PARAMS = ("reason", "lane", "event_type", "domain", "signature", "since", "until", "q",
                 "pks")


def filter_from_request(params: Mapping[str, Any], *, pks: Any = None) -> DeadLetterFilter:
    """The DeadLetterFilter a list page's query string means (InvalidFilter if it is bad)."""
    values: dict[str, Any] = {k: params.get(k) for k in FILTER_PARAMS if params.get(k)}
    died = params.get("died")
    if died:
        if died not in DIED:
            raise InvalidFilter(f"died: {died!r} is not one of {', '.join(DIED)}")
        values["since"] = (timezone.now() - DIED[died][1]).isoformat()
    if pks is not None:
        values["pks"] = list(pks)
    return DeadLetterFilter.from_params(values)


class _FieldFilter(admin.SimpleListFilter):
    """Filters on one DeadLetterFilter field named `parameter_name`."""

    def choices_for(self, request: HttpRequest) -> list[tuple[str, str]]:
        return []

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices = self.choices_for(request)
        current = self.value()
        if current and current not in {c for c, _ in choices}:
            choices.append((current, current))  # e.g. a group drilled into from the groups page
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        try:
            flt = filter_from_request({str(self.parameter_name): value})
        except InvalidFilter as exc:
            raise IncorrectLookupParameters(str(exc)) from exc
        return flt.queryset(queryset)


class ReasonFilter(_FieldFilter):
    title = "dead reason"
    parameter_name = "reason"

    def choices_for(self, request: HttpRequest) -> list[tuple[str, str]]:
        return list(DeadReason.choices)


class LaneFilter(_FieldFilter):
    title = "lane"
    parameter_name = "lane"

    def choices_for(self, request: HttpRequest) -> list[tuple[str, str]]:
        from django.conf import settings
        return [(lane, lane) for lane in settings.LANES]


class EventTypeFilter(_FieldFilter):
    title = "event type"
    parameter_name = "event_type"

    def choices_for(self, request: HttpRequest) -> list[tuple[str, str]]:
        return [(key, key) for key in EventType.objects.values_list("key", flat=True)]


class DomainFilter(_FieldFilter):
    title = "recipient domain"
    parameter_name = "domain"

    def choices_for(self, request: HttpRequest) -> list[tuple[str, str]]:
        # The domains of the newest dead letters (a bounded read, not the whole DLQ).
        emails = DeadLetterFilter().queryset().order_by("-id").values_list(
            "to_email", flat=True)[:2000]
        domains = sorted({e.rpartition("@")[2].lower() for e in emails})[:30]
        return [(d, d) for d in domains]


class SignatureFilter(_FieldFilter):
    title = "failure group"
    parameter_name = "signature"


class SinceFilter(_FieldFilter):
    title = "died since (date)"
    parameter_name = "since"


class UntilFilter(_FieldFilter):
    title = "died until (date)"
    parameter_name = "until"


class DiedFilter(admin.SimpleListFilter):
    title = "died"
    parameter_name = "died"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in DIED.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        if value not in DIED:
            raise IncorrectLookupParameters(f"died: {value!r}")
        return queryset.filter(updated_at__gte=timezone.now() - DIED[value][1])
