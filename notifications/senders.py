"""Handing built emails to the email backend, many at a time.

Real email APIs answer in 50-500 ms, and Anymail's backends send one HTTP request per message,
synchronously: one sender delivers at most 1/latency emails per second (2.5/s at 0.4 s). A
Sender keeps up to NOTIFY_SEND_CONCURRENCY sends in flight instead, each on a thread of its own
with its own backend instance (so its own keep-alive connection: requests' Session for Anymail,
one SMTP connection for Django's SMTP backend), all reused for the whole drain. Threads, not an
async client, because every Anymail ESP and Django backend is a blocking client; the GIL is
released while a thread waits on the network, which is nearly all of a send's time. The threads
only transmit: the drain builds every email (and reads the database) on its own thread first.

It is a sliding window, not rounds: a new send starts as soon as one finishes. Measured at 100 ms
with 32 sends per worker, rounds of 32 took ~143 ms each (32 threads wake together and their
~1.3 ms of CPU each is serialised by the GIL at the end of every round): 202 emails/s per worker
instead of the 320 the window allows.

The window starts small and grows: the first send of a drain goes alone, each success allows one
more in flight (doubling per round trip, as TCP's slow start), and when half or more of the last
eight sends failed transiently it halves. So a provider that is down from the start costs the
breaker's few minimum calls, one at a time (not a whole window), a provider that throttles gets
fewer requests at once, and a healthy one is at full concurrency after ~log2(64) = 6 round trips.
A drain that follows another within WARM_SECONDS in the same process starts at the window the
last one ended with; a provider that goes down mid-run then costs at most one attempt for each
send in flight, as the breaker opens (notifications/flow.py).

A backend with `send_each` (our pipelined SMTP backend) already hides the round trips on one
connection, so it gets chunks of SEND_CHUNK messages on the drain's thread instead.

Bounded: at most `concurrency` threads and backend connections per drain, and one round of
emails in memory.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.mail import EmailMessage, get_connection
from django.utils import timezone

from notifications.errors import SendResult, classify
from notifications.models import Message, Outcome
from notifications.ratelimit import RateLimiter

logger = logging.getLogger(__name__)

# Messages handed to a batch-capable backend (`send_each`) at a time: large enough to amortise
# the round trips, small enough for the breaker and the deadline to react.
SEND_CHUNK = 50

Built = tuple[Message, EmailMessage]
# How often (seconds) a drain with sends in flight and room for more looks for newly due mail.
REFILL_POLL = 0.02
# How far ahead (seconds) a drain may reserve rate-limited slots: a reserved slot is used even if
# the drain's deadline passes meanwhile, so this bounds how late a send can start.
RATE_AHEAD = 0.5


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


def _read_environment_once(backend: Any) -> None:
    """Read requests' environment settings once per connection instead of once per request.

    A requests Session with trust_env looks proxies (and their exceptions) and CA bundles up in
    os.environ on every request: a profile of a drain put that at ~40% of the CPU an Anymail
    send costs. The ESP's API URL is fixed per backend, so the answer is too: this applies it to
    the session and turns the per-request lookup off. (Backends without a requests session,
    SMTP, are left alone.)
    """
    session, url = getattr(backend, "session", None), getattr(backend, "api_url", None)
    if session is None or not url or not getattr(session, "trust_env", False):
        return
    import requests.utils

    for scheme, proxy in requests.utils.get_environ_proxies(url).items():
        session.proxies.setdefault(scheme, proxy)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False


def _close(backend: Any) -> None:
    try:
        backend.close()
    except Exception:
        logger.debug("closing the email connection failed", exc_info=True)


class Sender:
    """Sends built emails; see the module docstring. Use as a context manager."""

    def __init__(self, *, concurrency: int, message_id: Any,
                 limiter: RateLimiter | None = None,
                 connect: Callable[[], Any] = get_connection, name: str = "") -> None:
        self.name = name  # the provider's: a warm window is remembered per provider
        self._message_id = message_id  # pk -> our Message-ID (the SMTP provider id)
        self._connect = connect  # a new backend instance of this sender's provider
        self._backends: list[Any] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._owner = threading.get_ident()  # the drain's thread
        self._hold_until = 0.0  # time.monotonic() before which no send starts (a 429)
        first = connect()
        self.pipelined = hasattr(first, "send_each")
        self.concurrency = 1 if self.pipelined else max(1, concurrency)
        self.window = SEND_CHUNK if self.pipelined else _warm_window(name, self.concurrency)
        self._recent: deque[bool] = deque(maxlen=8)  # transient failure? of the last sends
        self._limiter = limiter
        self._next_start = 0.0  # time.monotonic() when the last reserved send may start
        if limiter is not None and self.pipelined:
            # A pipelined chunk leaves at once: keep it to 5% of a second's sends, so no
            # one-second window exceeds the rate by more than that.
            self.window = max(1, min(SEND_CHUNK, int(1 / limiter.interval / 20)))
        self._pool = (ThreadPoolExecutor(self.concurrency, thread_name_prefix="send")
                      if self.concurrency > 1 else None)
        # With a pool every send runs on a pool thread with its own backend: the probe is not
        # opened (opening Django's file backend already creates an outbox file).
        self._main = self._opened(first) if self._pool is None else None

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.pipelined:
            _windows[self.name] = (self.window, time.monotonic())
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for backend in self._backends:
            _close(backend)
        self._backends.clear()

    @property
    def flush_every(self) -> int:
        """How many finished sends the drain may hold before recording them."""
        return SEND_CHUNK if self.pipelined else max(1, self.concurrency // 4)

    def stream(self, items: list[tuple[Message, Any]],
               build: Callable[[Message, Any], EmailMessage],
               may_start: Callable[[], bool],
               more: Callable[[], list[tuple[Message, Any]]] | None = None,
               ) -> Iterator[list[tuple[int, Sent]]]:
        """Send `items`, yielding (index, Sent) groups as sends finish, in no particular order.

        Up to `window` sends are in flight; a new one starts as soon as one finishes (no round
        waits for its slowest send, and the CPU of one send overlaps the others' waiting).
        `build(message, content)` makes each email on this thread. No send starts once
        `may_start()` is False; `self.started` then says how many of `items` were started.
        When every item has started and the window has room, `more()` may add items (the drain
        claims its next batch while the last sends of this one are in flight, so the window
        does not empty at every batch boundary); `items` is extended in place. When `more()`
        returns nothing it is asked again every REFILL_POLL while sends are in flight.
        """
        self.started = 0
        if self.pipelined or self._pool is None:
            while self.started < len(items) and may_start():
                if self._held():
                    self._wait_out_hold(may_start)
                    continue
                part = items[self.started:self.started + self.window]
                first = self.started
                self.started += len(part)
                if self._limiter is not None:
                    time.sleep(self._limiter.reserve(len(part)))
                built = [(m, build(m, content)) for m, content in part]
                sent = self._send_each(built) if self.pipelined else [self._send_one(built[0])]
                self._learn(sent)
                yield list(enumerate(sent, first))
            return
        in_flight: dict[Future[Sent], int] = {}
        next_refill = 0.0  # time.monotonic() when `more()` may be asked again after coming empty
        while True:
            if (more is not None and self.started == len(items) and len(in_flight) < self.window
                    and time.monotonic() >= next_refill and not self._held() and may_start()):
                extra = more()
                items.extend(extra)
                # Nothing due now: ask again shortly while sends are in flight, so a message
                # that arrives meanwhile waits REFILL_POLL, not for the slowest send in flight.
                next_refill = 0.0 if extra else time.monotonic() + REFILL_POLL
            while (len(in_flight) < self.window and self.started < len(items)
                   and not self._rate_ahead() and not self._held() and may_start()):
                message, content = items[self.started]
                slot = self._reserve()  # when it may start, on this clock
                future = self._pool.submit(self._send_one, (message, build(message, content)),
                                           slot)
                in_flight[future] = self.started
                self.started += 1
            if not in_flight:
                if self.started < len(items) and self._held() and may_start():
                    self._wait_out_hold(may_start)
                    continue
                if self.started < len(items) and self._rate_ahead():
                    time.sleep(max(0.0, self._next_start - RATE_AHEAD - time.monotonic()))
                    continue
                return
            # With a rate limit, a hold or a refill to retry, wake up to start more even while
            # every send waits.
            timeout = 0.05 if self._limiter or self._held() else None
            if more is not None and self.started == len(items) and len(in_flight) < self.window:
                # A refill is what could start next: wake for it (never a zero timeout: that
                # spins this thread, holding the GIL the sending threads need).
                pause = max(REFILL_POLL / 4, next_refill - time.monotonic())
                timeout = pause if timeout is None else min(timeout, pause)
            done, _ = wait(in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
            if not done:
                continue
            group = [(in_flight.pop(future), future.result()) for future in done]
            self._learn([sent for _, sent in group])
            yield group

    def hold(self, seconds: float) -> None:
        """Start no send for `seconds` (the provider throttled us); sends in flight go on."""
        if seconds > 0:
            self._hold_until = max(self._hold_until, time.monotonic() + seconds)

    def _held(self) -> float:
        """Seconds the hold has left (0: none)."""
        return max(0.0, self._hold_until - time.monotonic())

    def _wait_out_hold(self, may_start: Callable[[], bool]) -> None:
        """Sleep while held, in short steps so the deadline is still seen."""
        while (left := self._held()) > 0 and may_start():
            time.sleep(min(left, 0.1))

    def _rate_ahead(self) -> bool:
        """Reservations already reach RATE_AHEAD into the future: reserve no more for now."""
        return self._limiter is not None and \
            self._next_start - time.monotonic() >= RATE_AHEAD

    def _reserve(self) -> float:
        """The time.monotonic() at which the next send may start under the shared rate (0.0,
        long past, without one).

        Counted from when the store answered, not from before it was asked: the store measures
        the delay on its clock once it holds the rate's row (SQLite: after the commit), so time
        spent waiting for that row's lock, or for the answer, must not move the slot earlier.
        Four workers contending for the row did that, and their sends bunched above the rate.
        """
        if self._limiter is None:
            return 0.0
        delay = self._limiter.reserve()
        self._next_start = time.monotonic() + delay
        return self._next_start

    def _learn(self, sent: Sequence[Sent]) -> None:
        """Slow start: +1 in flight per success (doubling per round trip), halved when half or
        more of the last sends failed transiently. A down provider keeps it at one."""
        if self.pipelined:
            return
        for one in sent:
            failed = one.result is not None and one.result.outcome != Outcome.SENT \
                and one.result.retryable
            self._recent.append(failed)
            if not failed:
                self.window = min(self.concurrency, self.window + 1)
            elif sum(self._recent) * 2 >= len(self._recent):
                self.window = max(1, self.window // 2)

    # --- internals ------------------------------------------------------------------------

    def _opened(self, backend: Any) -> Any:
        backend.open()
        _read_environment_once(backend)
        with self._lock:
            self._backends.append(backend)
        return backend

    def _backend(self) -> Any:
        """This thread's backend: the drain's own on its thread, one per pool thread."""
        if (threading.get_ident() == self._owner or self._pool is None) \
                and self._main is not None:
            return self._main
        backend = getattr(self._local, "backend", None)
        if backend is None:
            backend = self._local.backend = self._opened(self._connect())
        return backend

    def _send_one(self, item: Built, slot: float = 0.0) -> Sent:
        message, email = item
        # Its slot under the shared rate limit, as a time (not a delay counted from whenever this
        # thread got to run): a send that waited for a thread does not then wait its delay again
        # and land in a later second beside sends that were on time.
        if (wait_for := slot - time.monotonic()) > 0:
            time.sleep(wait_for)
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
        main = self._main
        if main is None:
            raise RuntimeError("a pipelined sender sends on its own backend")
        started, t0 = timezone.now(), time.monotonic()
        try:
            errors = main.send_each([email for _, email in built])
        except Exception as exc:  # e.g. the connection could not be opened: nothing went out
            reset_connection(main)
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

# The window each provider's last drain in this process ended with, and when: the next drain
# starts there instead of at one, if it follows soon (a healthy provider then does not pay slow
# start's round trips at every drain: at 400 ms those were ~2 s of each 20 s drain). After a
# pause the provider may have changed, so it starts at one again.
WARM_SECONDS = 30.0
_windows: dict[str, tuple[int, float]] = {}


def _warm_window(name: str, concurrency: int) -> int:
    window, ended = _windows.get(name, (1, 0.0))
    return min(concurrency, window) if time.monotonic() - ended < WARM_SECONDS else 1
