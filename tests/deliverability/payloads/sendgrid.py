"""SendGrid's Event Webhook: a JSON array of events per POST, optionally signed.

From SendGrid's Event Webhook reference (delivered, bounce with `type` bounce or blocked,
dropped, spamreport, open, click, unsubscribe, deferred) and "Getting Started with the Event
Webhook Security Features" (the Signed Event Webhook: an ECDSA P-256 signature over the
timestamp header followed by the raw body, base64 in X-Twilio-Email-Event-Webhook-Signature; the
public key shown to the account is the base64 of its DER SubjectPublicKeyInfo). Custom args
are merged into each event at the top level: Anymail's `anymail_id` (its message id for the
send) and our notification_id metadata. Every event has a unique `sg_event_id`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.deliverability.payloads import Hook

Kind = Literal["delivered", "bounce", "blocked", "dropped", "deferred", "spamreport", "open",
               "click", "unsubscribe"]


def sendgrid_event(kind: Kind, *, notification_id: str | None, provider_id: str,
                   recipient: str, event_id: str, at: datetime,
                   event: str = "order.placed") -> dict[str, Any]:
    """One event of the array; `provider_id` is Anymail's anymail_id for the send."""
    record: dict[str, Any] = {
        "email": recipient, "timestamp": int(at.timestamp()),
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>", "category": [event],
        "sg_event_id": event_id,
        "sg_message_id": "14c5d75ce93.dfd.64b469.filterdrecv-p3mdw1-756b745b58-kmzbl-18-"
                         "5F5FC76C-9.0",
        "anymail_id": provider_id,
    }
    if notification_id is not None:  # our metadata, merged in as SendGrid does custom args
        record["notification_id"] = notification_id
        record["notify_event"] = event
    if kind == "delivered":
        record.update(event="delivered", response="250 OK", ip="168.1.1.1", tls=1)
    elif kind in ("bounce", "blocked"):
        record.update(event="bounce", type=kind, ip="168.1.1.1", tls=1,
                      status="5.1.1" if kind == "bounce" else "4.7.1",
                      bounce_classification="Invalid Address" if kind == "bounce"
                      else "Reputation",
                      reason="550 5.1.1 The email account that you tried to reach does not "
                             "exist." if kind == "bounce" else
                             "421 4.7.1 Temporarily rate limited due to IP reputation.")
    elif kind == "dropped":
        record.update(event="dropped", reason="Bounced Address", status="5.0.0")
    elif kind == "deferred":
        record.update(event="deferred", attempt="1", ip="168.1.1.1", tls=1,
                      response="400 try again later")
    elif kind == "spamreport":
        record.update(event="spamreport")
    elif kind in ("open", "click"):
        record.update(event=kind, ip="192.0.2.10", sg_machine_open=False,
                      useragent="Mozilla/5.0 (Macintosh) Chrome/120.0")
        if kind == "click":
            del record["sg_machine_open"]
            record.update(url="https://example.com/orders/7", url_offset={"index": 0,
                                                                          "type": "html"})
    elif kind == "unsubscribe":
        record.update(event="unsubscribe")
    else:
        raise ValueError(f"no SendGrid event {kind!r}")
    return record


@dataclass(frozen=True)
class SigningKey:
    """An ECDSA P-256 key pair, as SendGrid makes one for the Signed Event Webhook."""

    private: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_key_setting(self) -> str:
        """What SendGrid shows as the verification key (ANYMAIL
        SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY): base64 DER, no PEM armour."""
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def sign(self, timestamp: str, body: bytes) -> str:
        return base64.b64encode(self.private.sign(timestamp.encode() + body,
                                                  ec.ECDSA(hashes.SHA256()))).decode()


def sendgrid(events: list[dict[str, Any]], *, key: SigningKey | None = None,
             timestamp: str = "1718122800") -> Hook:
    """One Event Webhook post of `events`, signed with `key` if given."""
    body = json.dumps(events).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "SendGrid Event API"}
    if key is not None:
        headers["X-Twilio-Email-Event-Webhook-Signature"] = key.sign(timestamp, body)
        headers["X-Twilio-Email-Event-Webhook-Timestamp"] = timestamp
    return Hook("sendgrid", body, headers)
