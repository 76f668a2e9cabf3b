"""Mailgun's webhooks: one JSON object, a `signature` block and the `event-data`.

From Mailgun's webhook documentation ("Securing Webhooks", the event-data examples of
delivered, failed, complained, opened, clicked and unsubscribed). The signature is the hex
HMAC-SHA256 of timestamp + token under the domain's webhook signing key; Anymail takes the
token (a random 50 characters, unique per post) for the event id. Mailgun writes the
message-id header without angle brackets (its send API answers with them, and Anymail adds them
back); `user-variables` are the metadata we sent.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any, Literal

from tests.deliverability.payloads import Hook, json_body

Kind = Literal["delivered", "failed-permanent", "failed-temporary", "complained", "opened",
               "clicked", "unsubscribed"]


def sign(signing_key: str, timestamp: str, token: str) -> str:
    return hmac.new(signing_key.encode(), f"{timestamp}{token}".encode(),
                    hashlib.sha256).hexdigest()


def mailgun(kind: Kind, *, notification_id: str | None, provider_id: str, recipient: str,
            event_id: str, at: datetime, signing_key: str, event: str = "order.placed") -> Hook:
    """One Mailgun webhook signed with `signing_key`; `event_id` is the signature token and
    `provider_id` the id Mailgun's send API answered ("<...@mg.example.com>")."""
    data: dict[str, Any] = {
        "id": f"{event_id[:22]}",  # Mailgun's event id: "only unique within a day"
        "timestamp": at.timestamp(),
        "log-level": "info",
        "recipient": recipient,
        "recipient-domain": recipient.rpartition("@")[2],
        "tags": [event],
        "campaigns": [],
        "user-variables": ({"notification_id": notification_id, "notify_event": event}
                           if notification_id is not None else {}),
        "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False,
                  "is-test-mode": False},
        "message": {"headers": {"to": recipient, "message-id": provider_id.strip("<>"),
                                "from": "Notifications <notifications@mg.example.com>",
                                "subject": "Order 7 confirmed"},
                    "attachments": [], "size": 4120},
    }
    envelope = {"transport": "smtp", "sender": "notifications@mg.example.com",
                "sending-ip": "198.51.100.7", "targets": recipient}
    if kind == "delivered":
        data.update(event="delivered", envelope=envelope, **{"delivery-status": {
            "tls": True, "mx-host": "mx.example.com", "attempt-no": 1, "description": "",
            "session-seconds": 0.43, "utf8": True, "code": 250,
            "message": "OK", "certificate-verified": True}})
    elif kind == "failed-permanent":
        data.update(event="failed", severity="permanent", reason="bounce", envelope=envelope,
                    **{"delivery-status": {
                        "tls": True, "mx-host": "mx.example.com", "attempt-no": 1,
                        "description": "", "session-seconds": 0.21, "code": 550,
                        "message": "5.1.1 The email account that you tried to reach does not "
                                   "exist.", "certificate-verified": True}})
    elif kind == "failed-temporary":
        data.update(event="failed", severity="temporary", reason="generic", envelope=envelope,
                    **{"delivery-status": {
                        "tls": True, "mx-host": "mx.example.com", "attempt-no": 1,
                        "description": "", "session-seconds": 0.3, "code": 452,
                        "retry-seconds": 600,
                        "message": "4.2.2 The email account that you tried to reach is over "
                                   "quota.", "certificate-verified": True}})
    elif kind == "complained":
        data.update(event="complained")
    elif kind in ("opened", "clicked", "unsubscribed"):
        data.update(event=kind, ip="192.0.2.10",
                    geolocation={"country": "NL", "region": "UT", "city": "Utrecht"},
                    **{"client-info": {"client-type": "browser", "client-os": "OS X",
                                       "device-type": "desktop", "client-name": "Chrome",
                                       "user-agent": "Mozilla/5.0 (Macintosh) Chrome/120.0"}})
        if kind == "clicked":
            data["url"] = "https://example.com/orders/7"
    else:
        raise ValueError(f"no Mailgun webhook {kind!r}")
    timestamp = str(int(at.timestamp()))
    body = {"signature": {"timestamp": timestamp, "token": event_id,
                          "signature": sign(signing_key, timestamp, event_id)},
            "event-data": data}
    return Hook("mailgun", json_body(body), {"Content-Type": "application/json",
                                            "User-Agent": "mailgun/treq-16.12.0"})
