"""The unsubscribe link's page: RFC 8058 one-click POSTs from mail clients, and a small page with
an Unsubscribe button and per-category preferences for people who open the link.

The signed token in the URL is the only credential (notifications/unsubscribe.py). A mail
client's one-click POST carries no cookie, session or CSRF token, so the view is csrf_exempt and
renders without the request (no context processors: nothing reads the session or sets a
cookie). A GET never unsubscribes: link scanners and previews fetch every URL in an email. Every
input a client can send ends in a 2xx or a clear 4xx: a bad token 400, a wrong method 405, an
oversized body 413, a body that does not parse 400, and nothing is written for any of them.
"""

from __future__ import annotations

from django.core.exceptions import BadRequest, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, QueryDict
from django.http.multipartparser import MultiPartParserError
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from notifications import suppression
from notifications.unsubscribe import InvalidToken, read_token

# Sources recorded on the Suppression rows (what the admin's suppression list shows).
SOURCE_ONE_CLICK = "one-click"
SOURCE_BUTTON = "unsubscribe page"
SOURCE_PREFERENCES = "preferences page"

# A one-click body is 26 bytes and the preferences form a few hundred: anything much larger is
# refused before it is read.
MAX_BODY_BYTES = 64 * 1024
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class _BadBody(Exception):
    """A POST body this view will not read: answered with `status` and the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@csrf_exempt
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET: the page. POST: one-click (`List-Unsubscribe=One-Click`), the page's Unsubscribe
    button (`action=unsubscribe`) or its preferences form (`action=preferences`)."""
    try:
        email, category = read_token(token)
    except InvalidToken as exc:
        return _invalid(str(exc))
    if request.method != "POST":
        return _page(email, category)
    try:
        form = _form(request)
    except _BadBody as exc:
        return HttpResponse(f"{exc}\n", status=exc.status, content_type="text/plain")
    if form.get("List-Unsubscribe") == "One-Click":
        # RFC 8058 section 3.2: answer the POST itself; no redirect, no page to load.
        suppression.unsubscribe(email=email, categories=[category], source=SOURCE_ONE_CLICK)
        return HttpResponse(f"Unsubscribed from {category}.\n", content_type="text/plain")
    action = form.get("action")
    if action == "unsubscribe":
        suppression.unsubscribe(email=email, categories=[category], source=SOURCE_BUTTON)
        return _page(email, category, notice=f"You will no longer get {category} emails.")
    if action == "preferences":
        _save_preferences(email, category, form)
        return _page(email, category, notice="Your preferences are saved.")
    return HttpResponse(
        "Nothing to do: send List-Unsubscribe=One-Click (or use the page's form).\n",
        status=400, content_type="text/plain")


def _form(request: HttpRequest) -> QueryDict:
    """The POSTed fields, or _BadBody. Other content types are read as urlencoded: a lenient
    reading of a one-click body some client sent without its Content-Type."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise _BadBody(400, "Content-Length is not a number.") from None
    if length > MAX_BODY_BYTES:
        raise _BadBody(413, f"The body is larger than {MAX_BODY_BYTES} bytes.")
    try:
        if request.content_type in FORM_TYPES:
            return request.POST
        return QueryDict(request.body, encoding="utf-8")
    except (MultiPartParserError, SuspiciousOperation, BadRequest, UnicodeError) as exc:
        raise _BadBody(400, f"The form body could not be read: {exc}") from None


def _offered(category: str) -> list[str]:
    """The categories the preferences form lists: every one recipients can unsubscribe from,
    and the link's own even if its event type has gone since the email was sent."""
    return sorted({*suppression.categories(), category})


def _save_preferences(email: str, category: str, form: QueryDict) -> None:
    """Checked = subscribed. Only the offered categories are touched (a crafted form cannot add
    scopes), and resubscribing lifts only the recipient's own unsubscribes, never a bounce, a
    complaint or an operator's entry (suppression.resubscribe)."""
    offered = _offered(category)
    wanted = set(form.getlist("subscribed")) & set(offered)
    everything = form.get("everything") in ("1", "on", "true")
    leave = [c for c in offered if c not in wanted] + ([""] if everything else [])
    keep = sorted(wanted) + ([] if everything else [""])
    suppression.unsubscribe(email=email, categories=leave, source=SOURCE_PREFERENCES)
    suppression.resubscribe(email=email, categories=keep, source=SOURCE_PREFERENCES)


def mask(email: str) -> str:
    """`ann@example.com` -> `a***@example.com`: enough for the owner to recognise, less for
    someone the email was forwarded to."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _page(email: str, category: str, *, notice: str = "") -> HttpResponse:
    unsubscribed = suppression.unsubscribed_categories(email)
    context = {
        "email": mask(email),
        "category": category,
        "unsubscribed": category in unsubscribed,
        "everything": "" in unsubscribed,
        "categories": [{"name": c, "subscribed": c not in unsubscribed}
                       for c in _offered(category)],
        "notice": notice,
    }
    return HttpResponse(render_to_string("notifications/unsubscribe.html", context))


def _invalid(message: str) -> HttpResponse:
    return HttpResponse(
        render_to_string("notifications/unsubscribe_invalid.html", {"message": message}),
        status=400)
