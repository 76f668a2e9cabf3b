"""Fast RFC 5322 serialization for the one email shape the drain sends.

Django's `EmailMessage.message().as_bytes()` builds an `email.message` tree and runs the stdlib
generator: ~330 µs per email, most of a send's CPU. The drain only ever sends a text body with one
`text/html` alternative (or text alone), so `message_bytes` writes those bytes directly and returns
None for every other shape; callers then fall back to Django's `message()`.

What the recipient sees is the same as with Django (tests parse both and compare): the same
headers after RFC 2047 decoding, the same decoded text and HTML. The transfer encoding differs on
purpose: 7bit when a part is ASCII with short lines, else quoted-printable (Django sends 8bit),
so the bytes are safe for any relay, 8BITMIME or not.
"""

from __future__ import annotations

import re
import secrets
from binascii import b2a_qp
from email.header import Header
from email.utils import formatdate, getaddresses
from functools import lru_cache
from smtplib import quoteaddr

from django.conf import settings
from django.core.mail import BadHeaderError, EmailMessage, EmailMultiAlternatives, make_msgid
from django.core.mail.message import sanitize_address
from django.core.mail.utils import DNS_NAME

__all__ = ["message_bytes", "envelope"]

# RFC 5322 section 2.1.1: a line is at most 998 octets plus CRLF.
MAX_LINE = 998

# Extra headers Django treats specially (address overrides) or that would clash with the MIME
# structure written here; a message carrying one goes through Django's own serializer.
_FALLBACK_HEADERS = frozenset(
    {"from", "to", "cc", "reply-to", "subject", "mime-version", "content-type",
     "content-transfer-encoding"}
)
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII except ":" (RFC 5322 ftext)

# A bare dot-atom address, or one after a plain or quoted ASCII display name. For these Django's
# sanitize_address + smtplib's quoteaddr yield exactly the addr-spec, so skip their ~90 µs.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]{{1,63}}(?:\.[A-Za-z0-9-]{{1,63}})*"
_PHRASE = r"[A-Za-z0-9 !#$%&'*+/=?^_`{|}~.-]*|\"[^\"\\\r\n]*\""
_SIMPLE_ADDRESS = re.compile(rf"(?P<bare>{_DOT_ATOM})|(?:{_PHRASE}) ?<(?P<angle>{_DOT_ATOM})>")


class _Unsupported(Exception):
    """This message needs Django's general serializer."""


def message_bytes(email: EmailMessage) -> bytes | None:
    """The message as RFC 5322 bytes with CRLF line endings, or None if this shape is not handled.

    Raises BadHeaderError, as Django does, for CR/LF in a header value.
    """
    try:
        return _serialize(email)
    except _Unsupported:
        return None


def envelope(email: EmailMessage) -> tuple[str, list[str]]:
    """The addr-specs for MAIL FROM and RCPT TO, exactly as Django's SMTP backend sends them.

    Django passes `sanitize_address(addr)` (IDNA domain, encoded display name) to smtplib, which
    keeps only the addr-spec; raises ValueError for an address Django would refuse.
    """
    return _addr_spec(str(email.from_email)), [_addr_spec(str(a)) for a in email.recipients()]


def _addr_spec(address: str) -> str:
    match = _SIMPLE_ADDRESS.fullmatch(address)
    if match is not None:
        return match["bare"] or match["angle"]
    return _sanitized_addr_spec(address)


@lru_cache(maxsize=4096)
def _sanitized_addr_spec(address: str) -> str:
    # The charset only shapes the display name, which smtplib drops.
    return quoteaddr(sanitize_address(address, "utf-8"))[1:-1]


# --- serializing ----------------------------------------------------------------------------------

def _serialize(email: EmailMessage) -> bytes:
    html = _html_alternative(email)
    if email.attachments or (email.encoding or settings.DEFAULT_CHARSET).lower() not in (
        "utf-8", "utf8"
    ):
        raise _Unsupported
    if not isinstance(email.body, str):
        raise _Unsupported
    extra = email.extra_headers
    lines = [_address_header("From", email.from_email)]
    for name, values in (("To", email.to), ("Cc", email.cc), ("Reply-To", email.reply_to)):
        if values:
            lines.append(_address_header(name, ", ".join(str(v) for v in values)))
    lines.append(_subject(str(email.subject)))
    names = set()
    extra_lines = []
    for name, value in extra.items():
        lname = name.lower()
        if lname in _FALLBACK_HEADERS or not _HEADER_NAME.fullmatch(name):
            raise _Unsupported
        names.add(lname)
        extra_lines.append(_header(name, str(value)))
    if "date" not in names:
        lines.append("Date: " + formatdate(localtime=settings.EMAIL_USE_LOCALTIME))
    if "message-id" not in names:
        lines.append("Message-ID: " + make_msgid(domain=DNS_NAME))
    lines.extend(extra_lines)
    lines.append("MIME-Version: 1.0")

    if html is None:
        cte, payload = _encode_part(email.body)
        lines.append('Content-Type: text/plain; charset="utf-8"')
        lines.append("Content-Transfer-Encoding: " + cte)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + payload

    # Like Django, an empty text body means an HTML-only multipart/alternative.
    parts = [("html", *_encode_part(html))]
    if email.body:
        parts.insert(0, ("plain", *_encode_part(email.body)))
    boundary = _boundary([payload for _, _, payload in parts])
    lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    out = [("\r\n".join(lines) + "\r\n\r\n").encode("ascii")]
    for subtype, cte, payload in parts:
        out.append(
            f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {cte}\r\n\r\n".encode("ascii")
        )
        out.append(payload)
        out.append(b"\r\n")  # this CRLF belongs to the delimiter line, not to the content
    out.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(out)


def _html_alternative(email: EmailMessage) -> str | None:
    """The HTML alternative, None for a text-only message; _Unsupported for any other shape."""
    # A subclass that builds its own MIME tree must keep doing so.
    cls = type(email)
    if cls.message is not EmailMessage.message or email.content_subtype != "plain":
        raise _Unsupported
    # Django's private MIME-building hooks, which django-stubs does not declare.
    if not isinstance(email, EmailMultiAlternatives):
        if cls._create_message is not EmailMessage._create_message:  # type: ignore[attr-defined]
            raise _Unsupported
        return None
    if (
        cls._create_message is not EmailMultiAlternatives._create_message  # type: ignore[attr-defined]
        or cls._create_alternatives  # type: ignore[attr-defined]
        is not EmailMultiAlternatives._create_alternatives  # type: ignore[attr-defined]
        or getattr(email, "alternative_subtype", "alternative") != "alternative"
    ):
        raise _Unsupported
    if not email.alternatives:
        return None
    if len(email.alternatives) != 1:
        raise _Unsupported
    content, mimetype = email.alternatives[0]
    if mimetype != "text/html" or not isinstance(content, str):
        raise _Unsupported
    return content


def _forbid_newlines(name: str, value: str) -> None:
    # Same check and message as django.core.mail.message.forbid_multi_line_headers.
    if "\n" in value or "\r" in value:
        raise BadHeaderError(
            f"Header values can't contain newlines (got {value!r} for header {name!r})"
        )


def _line(text: str) -> str:
    # Longer header lines would need folding; Django's generator does that, so let it.
    if any(len(part) > MAX_LINE for part in text.split("\r\n")):
        raise _Unsupported
    return text


def _header(name: str, value: str) -> str:
    _forbid_newlines(name, value)
    if not value.isascii():
        value = _encoded_word(value, name)
    return _line(f"{name}: {value}")


def _subject(subject: str) -> str:
    _forbid_newlines("Subject", subject)
    if subject.isascii():
        return _line("Subject: " + subject)
    return _line("Subject: " + _encoded_word(subject, "Subject"))


@lru_cache(maxsize=1024)
def _encoded_word(value: str, name: str) -> str:
    # ~30 µs each; subjects and names repeat across a batch, so cache.
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def _address_header(name: str, value: str) -> str:
    value = str(value)
    _forbid_newlines(name, value)
    if not value.isascii():
        value = _encoded_addresses(value)
    return _line(f"{name}: {value}")


@lru_cache(maxsize=1024)
def _encoded_addresses(value: str) -> str:
    # Django's rule: a non-ASCII address header is re-encoded address by address.
    pairs = getaddresses((value,))
    if any(not spec.rpartition("@")[0].isascii() for _, spec in pairs):
        raise _Unsupported  # a UTF-8 local part needs SMTPUTF8; leave it to Django
    return ", ".join(sanitize_address(pair, "utf-8") for pair in pairs).replace("\n", "\r\n")


def _encode_part(text: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, CRLF payload) for a text part."""
    if "\r" in text:  # the generator Django uses turns CRLF and lone CR into line ends too
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.isascii() and "\x00" not in text and max(map(len, text.split("\n"))) <= MAX_LINE:
        return "7bit", text.replace("\n", "\r\n").encode("ascii")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: whatever Django does with them
        raise _Unsupported from None
    # b2a_qp (C) keeps lines <= 76 with soft breaks and escapes "=", trailing blanks and a lone
    # "."; fed LF-only text it writes LF, which becomes CRLF here.
    return "quoted-printable", b2a_qp(data, istext=True).replace(b"\n", b"\r\n")


def _boundary(payloads: list[bytes]) -> str:
    # "=_" can never occur in quoted-printable text ("=" is always escaped there); 7bit parts are
    # checked so the delimiter cannot appear inside them.
    while True:
        boundary = "=_" + secrets.token_hex(12)
        token = boundary.encode("ascii")
        if not any(token in payload for payload in payloads):
            return boundary


