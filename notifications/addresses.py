"""Checking and normalising recipient addresses, fast enough for a 1,000-event batch.

email-validator is the authority (its rules and its error messages). Most of its cost is the
domain (IDNA, special-use names), and a batch mostly repeats a handful of domains, so an address
whose local part is a plain ASCII dot-atom is checked by a regex plus the domain verdict
email-validator gave once for that domain. Anything else (quoted or non-ASCII local parts, any
error) goes through email-validator whole, which also produces the message the producer sees.
"""

from __future__ import annotations

import re
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

# RFC 5322 dot-atom of atext: what email-validator accepts for an ASCII local part.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_LOCAL_MAX = 64
_ADDRESS_MAX = 254


@lru_cache(maxsize=8192)
def _domain(domain: str) -> str | None:
    """email-validator's normalised form of `domain`, or None if it rejects it."""
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None


def normalize_email(address: str) -> str:
    """The normalised address (domain lowercased/IDNA-checked, local part kept).

    Raises EmailNotValidError with email-validator's reason.
    """
    local, at, domain = address.rpartition("@")
    if at and len(local) <= _LOCAL_MAX and _DOT_ATOM.match(local):
        checked = _domain(domain)
        if checked is not None:
            normalized = f"{local}@{checked}"
            if len(normalized) <= _ADDRESS_MAX:
                return normalized
    return str(validate_email(address, check_deliverability=False).normalized)
