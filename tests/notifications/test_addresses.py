"""The fast address check must agree with email-validator on every input."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from notifications.addresses import normalize_email

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-."


def _verdict(function, address: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    try:
        return "ok", function(address)
    except EmailNotValidError as exc:
        return "error", str(exc)


def _reference(address: str) -> str:
    return str(validate_email(address, check_deliverability=False).normalized)


local_parts = st.text(alphabet=ATEXT + "ü \"@", min_size=0, max_size=70)
domains = st.sampled_from([
    "example.com", "Example.COM", "sub.example.org", "münchen.de", "localhost", "example.test",
    "-x.com", "ex_ample.com", "x.invalid", "[1.2.3.4]", "a" * 250 + ".com", "xn--mnchen-3ya.de",
    "example.com.", "", "exa mple.com",
])


@settings(max_examples=400, deadline=None)
@given(local=local_parts, domain=domains)
def test_it_agrees_with_email_validator(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    assert _verdict(normalize_email, address) == _verdict(_reference, address)


@settings(max_examples=200, deadline=None)
@given(address=st.emails() | st.text(max_size=40))
def test_it_agrees_with_email_validator_on_any_text(address: str) -> None:
    assert _verdict(normalize_email, address) == _verdict(_reference, address)


@pytest.mark.parametrize(("address", "expected"), [
    ("Ann@Example.COM", "Ann@example.com"),
    ("x@münchen.de", "x@münchen.de"),
])
def test_it_normalises_the_domain_and_keeps_the_local_part(address: str, expected: str) -> None:
    assert normalize_email(address) == expected
