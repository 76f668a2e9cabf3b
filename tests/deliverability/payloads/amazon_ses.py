"""Amazon SES event publishing through an SNS topic to an HTTPS subscription.

From the SES developer guide ("Contents of event data that Amazon SES publishes to Amazon SNS":
the mail object and the bounce, complaint, delivery and open objects) and the SNS developer
guide (the HTTP/S Notification JSON and its x-amz-sns-* headers). SNS posts the SES event as a
JSON *string* in `Message`, with `Content-Type: text/plain`; its `MessageId` (a uuid per
notification) is Anymail's event id. Anymail's SES backend sends metadata as an `X-Metadata`
header (JSON) and tags as `X-Tag` headers, because SES message tags cannot hold them; SES puts
the sent headers back in `mail.headers`, which is where the webhook reads them.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Literal

from tests.deliverability.payloads import Hook, iso, json_body

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"
Kind = Literal["Delivery", "Bounce-Permanent", "Bounce-Transient", "Complaint", "Open"]


def ses_event(kind: Kind, *, notification_id: str | None, provider_id: str, recipient: str,
              at: datetime, event: str = "order.placed") -> dict[str, Any]:
    """The SES event (what SNS carries as the Message string)."""
    headers = [
        {"name": "From", "value": "Notifications <notifications@example.com>"},
        {"name": "To", "value": recipient},
        {"name": "Subject", "value": "Order 7 confirmed"},
        {"name": "MIME-Version", "value": "1.0"},
        {"name": "Content-Type", "value": "multipart/alternative; boundary=\"===1234==\""},
        {"name": "Message-ID", "value": f"<{notification_id or 0}@notifications.local>"},
        {"name": "X-Tag", "value": event},
    ]
    if notification_id is not None:
        headers.append({"name": "X-Metadata", "value": json.dumps(
            {"notification_id": notification_id, "notify_event": event})})
    mail = {
        "timestamp": iso(at - timedelta(seconds=2)),
        "source": "notifications@example.com",
        "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/example.com",
        "sendingAccountId": "123456789012",
        "messageId": provider_id,
        "destination": [recipient],
        "headersTruncated": False,
        "headers": headers,
        "commonHeaders": {"from": ["Notifications <notifications@example.com>"],
                          "to": [recipient], "messageId": provider_id,
                          "subject": "Order 7 confirmed"},
        "tags": {"ses:configuration-set": ["notifications"],
                 "ses:source-ip": ["198.51.100.7"], "ses:from-domain": ["example.com"],
                 "ses:caller-identity": ["notifications-app"]},
    }
    feedback = f"0102018f{provider_id[-12:]}-000000"
    if kind == "Delivery":
        return {"eventType": "Delivery", "mail": mail, "delivery": {
            "timestamp": iso(at), "processingTimeMillis": 1532, "recipients": [recipient],
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
        }}
    if kind in ("Bounce-Permanent", "Bounce-Transient"):
        permanent = kind == "Bounce-Permanent"
        return {"eventType": "Bounce", "mail": mail, "bounce": {
            "bounceType": "Permanent" if permanent else "Transient",
            "bounceSubType": "General" if permanent else "MailboxFull",
            "bouncedRecipients": [{
                "emailAddress": recipient, "action": "failed",
                "status": "5.1.1" if permanent else "4.2.2",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown" if permanent
                else "smtp; 452 4.2.2 mailbox full",
            }],
            "timestamp": iso(at), "feedbackId": feedback,
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        }}
    if kind == "Complaint":
        return {"eventType": "Complaint", "mail": mail, "complaint": {
            "complainedRecipients": [{"emailAddress": recipient}],
            "timestamp": iso(at), "feedbackId": feedback, "complaintSubType": None,
            "userAgent": "Yahoo!-Mail-Feedback/2.0", "complaintFeedbackType": "abuse",
            "arrivalDate": iso(at - timedelta(seconds=1)),
        }}
    if kind == "Open":
        return {"eventType": "Open", "mail": mail, "open": {
            "timestamp": iso(at), "ipAddress": "192.0.2.10",
            "userAgent": "Mozilla/5.0 (Macintosh) Chrome/120.0",
        }}
    raise ValueError(f"no SES event {kind!r}")


def sns(message: str, *, event_id: str, at: datetime, type_: str = "Notification") -> Hook:
    """SNS's HTTPS post of `message` (a string) with its headers."""
    subscription = f"{TOPIC}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55"
    envelope = {
        "Type": type_, "MessageId": event_id, "TopicArn": TOPIC,
        "Subject": "Amazon SES Email Event Notification" if type_ == "Notification" else None,
        "Message": message, "Timestamp": iso(at), "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQ"
                     "vi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGkM5Krc=",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-"
                          "9c6465fa7f48f5cacd23014631ec1136.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&"
                          f"SubscriptionArn={subscription}",
    }
    if envelope["Subject"] is None:
        del envelope["Subject"]
    headers = {
        "Content-Type": "text/plain; charset=UTF-8",
        "User-Agent": "Amazon Simple Notification Service Agent",
        "x-amz-sns-message-type": type_,
        "x-amz-sns-message-id": event_id,
        "x-amz-sns-topic-arn": TOPIC,
        "x-amz-sns-subscription-arn": subscription,
    }
    return Hook("amazon_ses", json_body(envelope), headers)


def amazon_ses(kind: Kind, *, notification_id: str | None, provider_id: str, recipient: str,
               event_id: str, at: datetime, event: str = "order.placed") -> Hook:
    """One SES event as SNS posts it; `event_id` is the SNS MessageId."""
    ses = ses_event(kind, notification_id=notification_id, provider_id=provider_id,
                    recipient=recipient, at=at, event=event)
    return sns(json.dumps(ses), event_id=event_id, at=at)
