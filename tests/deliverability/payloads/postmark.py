"""Postmark's tracking webhooks: one JSON object per POST, `RecordType` saying which.

From Postmark's webhook documentation (Delivery, Bounce, Spam complaint, Open, Click and
Subscription change webhooks). Every record carries the `MessageID` Postmark answered the send
with, the `Tag`, and the `Metadata` we sent (delivery.build_email's notification_id and event);
bounces and complaints also carry Postmark's bounce `ID` (Anymail's event id), `Type` and
`TypeCode`, and whether the address is now `Inactive` on Postmark's side.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from tests.deliverability.payloads import Hook, iso, json_body

# Postmark's bounce types as its Bounce webhook writes them: (Type, TypeCode, Name,
# Description, Inactive).
BOUNCES: dict[str, tuple[str, int, str, str, bool]] = {
    "HardBounce": ("HardBounce", 1, "Hard bounce",
                   "The server was unable to deliver your message (ex: unknown user, mailbox "
                   "not found).", True),
    "SoftBounce": ("SoftBounce", 4096, "Soft bounce",
                   "Unable to temporarily deliver this email message (ex: mailbox full, "
                   "message too large).", False),
    "Transient": ("Transient", 2, "Message delayed",
                  "The server could not temporarily deliver your message (ex: Message is "
                  "delayed due to network troubles).", False),
}

Kind = Literal["Delivery", "HardBounce", "SoftBounce", "Transient", "SpamComplaint", "Open",
               "Click", "Unsubscribe"]


def postmark(kind: Kind, *, notification_id: str | None, provider_id: str, recipient: str,
             event_id: int | None = None, at: datetime, event: str = "order.placed",
             details: str = "") -> Hook:
    """One Postmark webhook. `event_id` is the bounce ID (bounce and complaint records only;
    Postmark's other records have none). `notification_id` None: no metadata came back."""
    metadata = ({"notification_id": notification_id, "notify_event": event}
                if notification_id is not None else {})
    common: dict[str, Any] = {"MessageID": provider_id, "MessageStream": "outbound",
                              "ServerID": 23, "Tag": event, "Metadata": metadata}
    if kind == "Delivery":
        record = {"RecordType": "Delivery", "Recipient": recipient, "DeliveredAt": iso(at, 7),
                  "Details": details or "smtp;250 2.0.0 OK 1573171834 h1si1234567qkf.2 - gsmtp",
                  **common}
    elif kind in BOUNCES or kind == "SpamComplaint":
        if kind == "SpamComplaint":
            type_, code, name, description, inactive = (
                "SpamComplaint", 512, "Spam complaint",
                "The subscriber explicitly marked this message as spam.", True)
        else:
            type_, code, name, description, inactive = BOUNCES[kind]
        record = {
            "RecordType": "SpamComplaint" if kind == "SpamComplaint" else "Bounce",
            "ID": event_id, "Type": type_, "TypeCode": code, "Name": name, **common,
            "Description": description,
            "Details": details or ("smtp;550 5.1.1 The email account that you tried to reach "
                                   "does not exist." if kind == "HardBounce" else
                                   "smtp;452 4.2.2 The email account that you tried to reach "
                                   "is over quota."),
            "Email": recipient, "From": "notifications@example.com", "BouncedAt": iso(at, 7),
            "DumpAvailable": True, "Inactive": inactive, "CanActivate": kind != "SpamComplaint",
            "Subject": "Order 7 confirmed", "Content": "",
        }
    elif kind in ("Open", "Click"):
        record = {
            "RecordType": kind, **common, "Recipient": recipient, "ReceivedAt": iso(at, 7),
            "FirstOpen": True, "Platform": "WebMail", "ReadSeconds": 5,
            "UserAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
                         "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "Client": {"Name": "Chrome 120.0", "Company": "Google", "Family": "Chrome"},
            "OS": {"Name": "OS X 10.15 Catalina", "Company": "Apple Computer, Inc.",
                   "Family": "OS X 10"},
            "Geo": {"CountryISOCode": "NL", "Country": "Netherlands", "City": "Utrecht",
                    "IP": "192.0.2.10"},
        }
        if kind == "Click":
            del record["FirstOpen"], record["ReadSeconds"]
            record.update(ClickLocation="HTML", OriginalLink="https://example.com/orders/7")
    elif kind == "Unsubscribe":
        # What Postmark posts when the recipient used its unsubscribe link: a suppression for
        # the message stream, "ManualSuppression" by the recipient.
        record = {"RecordType": "SubscriptionChange", **common, "ChangedAt": iso(at, 7),
                  "Recipient": recipient, "Origin": "Recipient", "SuppressSending": True,
                  "SuppressionReason": "ManualSuppression"}
    else:
        raise ValueError(f"no Postmark webhook {kind!r}")
    return Hook("postmark", json_body(record), {"Content-Type": "application/json",
                                               "User-Agent": "Postmark"})
