"""Enqueue helper for bench/delivery.py, run in a subprocess from the project root.

    DJANGO_SETTINGS_MODULE=project.settings           python -m bench.enqueue ours N
    DJANGO_SETTINGS_MODULE=bench.postoffice_settings  python -m bench.enqueue postoffice N

`ours` queues N newsletters on the bulk lane with notify_many() in chunks of 1,000, exactly as a
producer would, except that waking the lane is a no-op: the benchmark wakes it itself once the
cluster is up, so the timed window starts with the whole backlog waiting.

`postoffice` queues N emails with post_office's `mail.send_many()` (priority "medium"), with the
very same rendered subject, HTML and text as our first N bulk messages, so both systems push
identical bytes through the sink.

Prints one JSON line on stdout: {"enqueued": N, "seconds": S}.
"""

from __future__ import annotations

import json
import sys
import time
from email.utils import formataddr
from typing import Any

CHUNK = 1000

HEADLINE = "Autumn collection is here: 20% off everything this weekend, {name}"
BODY = (
    "We have been busy over the summer. The new autumn collection brings warm wool coats, "
    "waterproof boots built for city rain, and a range of knitwear made from recycled yarn. "
    "Every piece is designed in our studio and made by partners we visit every year. "
    "This weekend only, members get 20% off everything, including items already on sale, "
    "with free delivery on orders over $50 and free returns for 60 days. Our stores are open "
    "late on Friday and Saturday, and our stylists are happy to help you put an outfit "
    "together, in store or over video call. Prefer to shop from your sofa? The app now shows "
    "live stock for your nearest store, so you can reserve a size and pick it up the same day. "
    "Thank you for being with us; we hope you love the new season as much as we do."
)


def events(start: int, count: int) -> list[dict[str, Any]]:
    return [
        {
            "event": "marketing.newsletter",
            "to": {"email": f"reader{i}@example.com", "name": f"Reader {i}"},
            "data": {"headline": HEADLINE.format(name=f"Reader {i}"), "body": BODY},
        }
        for i in range(start, start + count)
    ]


def enqueue_ours(total: int) -> int:
    import notifications.wakeups
    from notifications.services import notify_many

    # notify_many still flips LaneState.wake_pending; only the django-q2 task is suppressed.
    notifications.wakeups.async_task = lambda *args, **kwargs: None
    queued = 0
    for start in range(0, total, CHUNK):
        results = notify_many(events(start, min(CHUNK, total - start)), producer="bench")
        errors = [r for r in results if isinstance(r, Exception)]  # else Queued
        if errors:
            raise SystemExit(f"notify_many rejected {len(errors)} events, first: {errors[0]!r}")
        queued += len(results)
    return queued


def enqueue_postoffice(total: int) -> tuple[int, float]:
    from django.conf import settings
    from post_office import mail

    from notifications.content import message_render
    from notifications.models import Message

    messages = list(Message.objects.filter(lane="bulk").order_by("id")[:total])
    if len(messages) < total:
        raise SystemExit(f"need {total} of our messages to copy from, found {len(messages)}")
    # post-office is handed finished content: render it here, before its enqueue is timed.
    rows = []
    for m in messages:
        email = message_render(m)
        rows.append((m.pk, m.to_email, m.to_name, email.subject, email.html, email.text))
    started = time.perf_counter()
    queued = 0
    for start in range(0, total, CHUNK):
        kwargs_list = [
            {
                "recipients": [formataddr((name, email)) if name else email],
                "sender": settings.DEFAULT_FROM_EMAIL,
                "subject": subject,
                "message": text,
                "html_message": html,
                "headers": {"X-Notification-Id": str(pk)},
                "priority": "medium",
            }
            for pk, email, name, subject, html, text in rows[start:start + CHUNK]
        ]
        queued += len(mail.send_many(kwargs_list))
    return queued, time.perf_counter() - started


def main() -> None:
    import django

    mode, total = sys.argv[1], int(sys.argv[2])
    django.setup()
    t0 = time.perf_counter()
    if mode == "ours":
        queued = enqueue_ours(total)
        seconds = time.perf_counter() - t0
    elif mode == "postoffice":
        queued, seconds = enqueue_postoffice(total)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps({"enqueued": queued, "seconds": seconds}))


if __name__ == "__main__":
    main()
