"""Unsubscribe links (RFC 2369 List-Unsubscribe, RFC 8058 one-click) for bulk-lane email.

Every bulk email carries a link naming its recipient and its category (the event type's
`unsubscribe_category`, the same one suppression.blocks() compares scopes with). The link's
token is the only credential: a mail client's one-click POST has no cookie, session or CSRF
token, so the token is signed with SECRET_KEY (Django's signing, its own salt) and cannot be
forged, altered or enumerated. It has no expiry: the link in an email read a year from now must
still work. Rotating SECRET_KEY without keeping the old one in SECRET_KEY_FALLBACKS breaks every
link already mailed.

token_for, url_for and headers_for run per bulk email on the drain's hot path (build_email,
message_context): they sign a short string and read the category from the lookups cache, with
no query per email (~25 us each).
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core import signing
from django.urls import reverse

from notifications import suppression
from notifications.models import Lane, Message

logger = logging.getLogger(__name__)

SALT = "notifications.unsubscribe"
MAILTO_PREFIX = "unsubscribe-"
_TOKEN_IN_SUBJECT = re.compile(re.escape(MAILTO_PREFIX) + r"([A-Za-z0-9_:-]{10,1000})")
# A token longer than this is not one of ours (an address is at most 254 characters): refused
# before the signature is even computed.
MAX_TOKEN_LENGTH = 1000


class InvalidToken(ValueError):
    """The token was not made by token_for() with this SECRET_KEY (forged, altered or cut)."""


@lru_cache(maxsize=4)
def _signer_for(key: str, fallbacks: tuple[str, ...]) -> signing.Signer:
    # Signer, not TimestampSigner: no timestamp, so a shorter link that never expires. Kept per
    # key (a Signer holds nothing else): building one costs as much as signing with it.
    return signing.Signer(key=key, fallback_keys=list(fallbacks), salt=SALT)


def _signer() -> signing.Signer:
    return _signer_for(settings.SECRET_KEY, tuple(settings.SECRET_KEY_FALLBACKS))


def token_for(email: str, category: str) -> str:
    """The signed token for `email` (normalized) and `category`: URL-safe, ~95 characters for
    a typical address (base64 of a two-item JSON list, then the signature). Not compressed:
    zlib saves nothing on a string this short and costs half the signing time."""
    return _signer().sign_object([suppression.normalize(email), category])


def read_token(token: str) -> tuple[str, str]:
    """(email, category) from a token of token_for(); raises InvalidToken for anything else."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("This unsubscribe link is incomplete or not one of ours.")
    try:
        value = _signer().unsign_object(token)
    except signing.BadSignature as exc:
        raise InvalidToken("This unsubscribe link is not valid: it was altered or cut.") from exc
    except Exception as exc:  # a valid signature over bytes that do not decode: not ours either
        raise InvalidToken("This unsubscribe link cannot be read.") from exc
    if not (isinstance(value, list) and len(value) == 2
            and all(isinstance(part, str) for part in value) and "@" in value[0]):
        raise InvalidToken("This unsubscribe link cannot be read.")
    return value[0], value[1]


def category_of(message: Message) -> str:
    """What an unsubscribe from `message` stops: the scope the suppression rule compares with
    (cached per event type: no query per email)."""
    return suppression.kind_of(message.event_type_id).category


@lru_cache(maxsize=4)
def _url_around(public_url: str) -> tuple[str, str]:
    """What comes before and after the token in an unsubscribe URL. reverse() costs twice the
    signing; a token (base64url and ':') needs no quoting, so pasting it in is the same."""
    before, _, after = reverse("unsubscribe", args=["TOKEN"]).partition("TOKEN")
    return public_url + before, after


def url_for(message: Message) -> str:
    """The absolute unsubscribe URL for `message`'s recipient and category."""
    before, after = _url_around(settings.NOTIFY_DELIVERABILITY["PUBLIC_URL"])
    return before + token_for(message.to_email, category_of(message)) + after


def offers_unsubscribe(message: Message) -> bool:
    """Does `message` carry an unsubscribe link (headers and the template's unsubscribe_url)?
    Bulk mail only (transactional mail, such as a password reset, is not something to
    unsubscribe from), and never an `unsubscribe_exempt` event type even on the bulk lane: the
    suppression rule ignores unsubscribes for it, so a link would answer "Unsubscribed" while
    the mail kept coming. Cached per event type: no query per email."""
    return message.lane == Lane.BULK and not suppression.kind_of(message.event_type_id).exempt


def headers_for(message: Message) -> dict[str, str]:
    """The List-Unsubscribe headers of `message`, if it offers an unsubscribe at all."""
    if not offers_unsubscribe(message):
        return {}
    token = token_for(message.to_email, category_of(message))
    before, after = _url_around(settings.NOTIFY_DELIVERABILITY["PUBLIC_URL"])
    links = [f"<{before}{token}{after}>"]
    mailto = settings.NOTIFY_DELIVERABILITY["UNSUBSCRIBE_MAILTO"]
    if mailto:
        # The token rides in the subject: the reply comes back through the ESP's inbound
        # webhook (on_inbound below), where the sender's address alone would prove nothing.
        links.append(f"<mailto:{mailto}?subject={MAILTO_PREFIX}{token}>")
    return {
        "List-Unsubscribe": ", ".join(links),
        # RFC 8058: a POST of exactly this body to the URL unsubscribes, with no page to visit.
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def on_inbound(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
    """The anymail.signals.inbound receiver: a reply to the List-Unsubscribe mailto (RFC 2369),
    routed to this platform by the ESP's inbound webhook, unsubscribes what its subject's token
    names. Mail without a valid token is logged and ignored (answering an inbound webhook with
    an error makes the ESP retry it for days)."""
    message = getattr(event, "message", None)
    subject = str(getattr(message, "subject", "") or "") if message is not None else ""
    found = _TOKEN_IN_SUBJECT.search(subject)
    if found is None:
        logger.info("inbound mail from %s without an unsubscribe token ignored", esp_name)
        return
    try:
        email, category = read_token(found.group(1))
    except InvalidToken:
        logger.info("inbound unsubscribe from %s with a bad token ignored", esp_name)
        return
    suppression.unsubscribe(email=email, categories=[category], source=f"mailto ({esp_name})")

