"""Handing built emails to the email backend, many at a time.

Real email APIs answer in 50-500 ms, and Anymail's backends send one HTTP request per message,
synchronously: one sender delivers at most 1/latency emails per second (2.5/s at 0.4 s). A
Sender keeps up to NOTIFY_SEND_CONCURRENCY sends in flight instead, each on a thread of its own
with its own backend instance (so its own keep-alive connection: requests' Session for Anymail,
one SMTP connection for Django's SMTP backend), all reused for the whole drain. Threads, not an
async client, because every Anymail ESP and Django backend is a blocking client; the GIL is
released while a thread waits on the network, which is nearly all of a send's time. The threads
only transmit: the drain builds every email (and reads the database) on its own thread first.

Rounds start small and grow: the first round of a drain is one send, and each round whose sends
mostly went through doubles the next, up to the concurrency; a round where half or more failed
transiently halves it. So a provider that is down costs the same few attempts as with one
sender before the circuit breaker opens (not a whole round of 16), a provider that throttles
gets fewer requests at once, and a healthy one is at full concurrency after log2(16) = 4 rounds.

A backend with `send_each` (our pipelined SMTP backend) already hides the round trips on one
connection, so it gets chunks of SEND_CHUNK messages on the drain's thread instead.

Bounded: at most `concurrency` threads and backend connections per drain, and one round of
emails in memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.mail import EmailMessage, get_connection
from django.utils import timezone

from notifications.errors import SendResult, classify
from notifications.models import Message, Outcome

logger = logging.getLogger(__name__)

# Messages handed to a batch-capable backend (`send_each`) at a time: large enough to amortise
# the round trips, small enough for the breaker and the deadline to react.
SEND_CHUNK = 50

Built = tuple[Message, EmailMessage]


@dataclass(frozen=True)
class Sent:
    """What one send came to. `result` is None when the message was never attempted."""

    result: SendResult | None
    started_at: datetime
    duration_ms: int


def provider_id(email: EmailMessage, fallback: str) -> str:
    status = getattr(email, "anymail_status", None)
    found = getattr(status, "message_id", None) if status is not None else None
    return str(found or fallback)


def reset_connection(backend: Any) -> None:
    """After a failure the connection may be half-dead: drop it and open a fresh one."""
    try:
        backend.close()
    except Exception:  # closing a broken connection may itself fail; the reopen below matters
        logger.debug("closing the email connection failed", exc_info=True)
    try:
        backend.open()
    except Exception:
        logger.debug("reopening the email connection failed", exc_info=True)


def _close(backend: Any) -> None:
    try:
        backend.close()
    except Exception:
        logger.debug("closing the email connection failed", exc_info=True)


class Sender:
    """Sends rounds of built emails; see the module docstring. Use as a context manager."""

    def __init__(self, *, concurrency: int, message_id: Any) -> None:
        self._message_id = message_id  # pk -> our Message-ID (the SMTP provider id)
        self._backends: list[Any] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._owner = threading.get_ident()  # the drain's thread
        first = get_connection()
        self.pipelined = hasattr(first, "send_each")
        self.concurrency = 1 if self.pipelined else max(1, concurrency)
        self.window = SEND_CHUNK if self.pipelined else 1
        self._main = self._opened(first)
        self._pool = (ThreadPoolExecutor(self.concurrency, thread_name_prefix="send")
                      if self.concurrency > 1 else None)

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for backend in self._backends:
            _close(backend)
        self._backends.clear()

    @property
    def round_size(self) -> int:
        """How many emails the next round may send."""
        return self.window

    def feedback(self, *, tried: int, failed: int) -> None:
        """A round came back with `failed` transient failures of `tried`: size the next one."""
        if self.pipelined or not tried:
            return
        if failed * 2 >= tried:
            self.window = max(1, self.window // 2)
        else:
            self.window = min(self.concurrency, self.window * 2)

    def send(self, built: Sequence[Built]) -> list[Sent]:
        """Send one round (at most `round_size`); one Sent per email, in order."""
        if self.pipelined:
            return self._send_each(built)
        if self._pool is None or len(built) == 1:
            return [self._send_one(item) for item in built]
        return list(self._pool.map(self._send_one, built))

    # --- internals ------------------------------------------------------------------------

    def _opened(self, backend: Any) -> Any:
        backend.open()
        with self._lock:
            self._backends.append(backend)
        return backend

    def _backend(self) -> Any:
        """This thread's backend: the drain's own on its thread, one per pool thread."""
        if threading.get_ident() == self._owner or self._pool is None:
            return self._main
        backend = getattr(self._local, "backend", None)
        if backend is None:
            backend = self._local.backend = self._opened(get_connection())
        return backend

    def _send_one(self, item: Built) -> Sent:
        message, email = item
        backend = self._backend()
        started, t0 = timezone.now(), time.monotonic()
        try:
            backend.send_messages([email])
        except Exception as exc:  # every transport's errors are classified, none escapes
            reset_connection(backend)
            result = classify(exc)
        else:
            ours = self._message_id(message.pk)
            result = SendResult(Outcome.SENT, provider_message_id=provider_id(email, ours))
        return Sent(result, started, int((time.monotonic() - t0) * 1000))

    def _send_each(self, built: Sequence[Built]) -> list[Sent]:
        started, t0 = timezone.now(), time.monotonic()
        try:
            errors = self._main.send_each([email for _, email in built])
        except Exception as exc:  # e.g. the connection could not be opened: nothing went out
            reset_connection(self._main)
            errors = [exc] + [_NOT_ATTEMPTED] * (len(built) - 1)
        each_ms = int((time.monotonic() - t0) * 1000 / max(1, len(built)))
        sent: list[Sent] = []
        for (message, _), error in zip(built, errors, strict=True):
            if error is None:
                result: SendResult | None = SendResult(
                    Outcome.SENT, provider_message_id=self._message_id(message.pk))
            elif error is _NOT_ATTEMPTED or getattr(error, "not_attempted", False) \
                    or type(error).__name__ == "NotAttempted":
                result = None
            else:
                result = classify(error)
            sent.append(Sent(result, started, each_ms))
        return sent


_NOT_ATTEMPTED = object()
