"""Failure signatures: what dead letters are grouped by in the console.

A signature is a short, stable hash of what makes two failures "the same problem":

- the dead reason (permanent_error, max_attempts, expired, render_failed),
- the error class (`smtplib.SMTPRecipientsRefused`, an Anymail error, ...),
- the provider code (HTTP status, SMTP reply code, `recipient_refused`, ...) and the enhanced
  status code (RFC 3463, `5.1.1`) found in the text, which says more than the reply code,
- the error message, normalised: emails, UUIDs, hex, numbers and quoted single tokens become
  placeholders, so "mailbox bob@x.com full (id 8f3a9c01)" and "mailbox ann@y.org full (id 77)"
  are one group,
- the recipient's domain (a provider that refuses one domain is a group of its own).

Computed by the drain and the sweeper when a message dies (passed to transitions.kill, stored in
Message.failure_signature) from exactly what its last DeliveryAttempt records, so the backfill
(`manage.py dlq backfill-signatures`) computes the same value for rows that died earlier.

Pure functions, no model imports: notifications (below dlq in the layering) may import this.
"""

from __future__ import annotations

import hashlib
import re

SIGNATURE_LENGTH = 16  # hex characters: 64 bits, no collision among a DLQ's groups in practice

_BYTES_LITERAL = re.compile(r"""\bb(['"])(.*?)\1""", re.DOTALL)
_EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}\b")
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_HEX = re.compile(r"\b(?:0x[0-9a-fA-F]+|(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,})\b")
# A quoted value without spaces is data (an id, a field value); quoted prose is kept.
_QUOTED = re.compile(r"""(['"`])[^\s'"`]{1,200}\1""")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_SPACES = re.compile(r"\s+")


def enhanced_status_code(text: str) -> str:
    """The first RFC 3463 enhanced status code in `text` (`5.1.1`), or ""."""
    found = _ENHANCED.search(text)
    return ".".join(found.groups()) if found else ""


def normalise_error(text: str) -> str:
    """`text` with the parts that vary between two instances of one failure replaced."""
    text = _BYTES_LITERAL.sub(lambda m: m.group(2), text)  # SMTP replies: b'5.1.1 ...'
    text = text.replace("\\r\\n", " ").replace("\\n", " ")
    text = _EMAIL.sub("<email>", text)
    text = _UUID.sub("<uuid>", text)
    text = _ENHANCED.sub("<esc>", text)  # kept separately, see failure_signature
    text = _HEX.sub("<hex>", text)
    text = _QUOTED.sub("<value>", text)
    text = _NUMBER.sub("<n>", text)
    return _SPACES.sub(" ", text).strip()[:500]


def recipient_domain(email: str) -> str:
    return email.rpartition("@")[2].strip().lower()


def failure_signature(*, dead_reason: str, error_class: str, error_code: str,
                      error_message: str, to_email: str) -> str:
    """The signature of one dead letter (see the module docstring)."""
    parts = (
        str(dead_reason),
        error_class.strip(),
        error_code.strip(),
        enhanced_status_code(error_message),
        normalise_error(error_message),
        recipient_domain(to_email),
    )
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()
    return digest[:SIGNATURE_LENGTH]
