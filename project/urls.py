from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, include, path
from django.views import defaults
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from notifications.api.errors import json_error
from notifications.metrics import metrics
from notifications.unsubscribe_views import unsubscribe
from notifications.webhooks import require_webhook_secret
from project import health


def _anymail_patterns() -> list[URLPattern | URLResolver]:
    from anymail import urls as anymail_urls

    return list(anymail_urls.urlpatterns)


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("notifications.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("health/", health.health, name="health"),
    path("health/ready/", health.ready, name="health-ready"),
    # Prometheus; loopback or a bearer token only (NOTIFY_METRICS_ALLOW, NOTIFY_METRICS_TOKEN).
    path("metrics", metrics, name="metrics"),
    # Anymail's tracking (and inbound) webhook views, refused while ANYMAIL_WEBHOOK_SECRET is
    # unset: Anymail itself would accept anyone's events then, with only a warning.
    path("anymail/", include(require_webhook_secret(_anymail_patterns()))),
    # The List-Unsubscribe link of bulk email (RFC 8058 one-click POSTs land here too).
    path("u/<str:token>/", unsubscribe, name="unsubscribe"),
    # The same without the slash: APPEND_SLASH would answer a POST with a redirect (or, under
    # DEBUG, an error), and a one-click POST must be answered where it lands.
    path("u/<str:token>", unsubscribe),
]


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_error(404, "not_found", "No such endpoint.")
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest, *args: Any) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_error(500, "server_error", "Internal error; it has been logged.")
    return defaults.server_error(request)
