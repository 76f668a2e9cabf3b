"""Waking waiting drains with PostgreSQL LISTEN/NOTIFY instead of polling the claim index.

Every wake-up (wakeups.wake_lane: after an ingest commits, when a claim came back full, when a
drain hands work back) also runs `pg_notify('notify_lane_<lane>', '')` in the same statement as
its wake flag. Each worker process that drains keeps ONE extra connection, owned by a daemon
thread, that LISTENs on the channels of the lanes drained in that process and counts the
notifications it receives.

A drain holds a `Watch` on its lane. Before it looks at the table (a due probe or a claim) it
calls `look()`, which remembers the count; `changed()` is True once a notification arrived
after that, and `wait(timeout)` sleeps until one does. A row committed before a `look()` is seen
by the look that follows it; a row committed after it sends its notification after it, so the
count moves: nothing can fall between (the same argument as wakeups' flag).

A notification is a hint, never the message. `changed()` also answers True, so the caller looks
at the table as it did before, when:
- the listening connection is down, or was re-established since the last look (notifications
  sent meanwhile were lost): the drain is back to probing every IDLE_POLL until it is up;
- RECHECK_SECONDS passed since the last look: mail that became due without a wake-up (a retry's
  backoff ran out, a lease was handed back) is found within that even while nothing is sent.

SQLite has no LISTEN: there `watch()` returns None and drains probe as before.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from notifications.models import Lane

logger = logging.getLogger(__name__)

RECHECK_SECONDS = 1.0
APPLICATION_NAME = "notify-lane-listener"
# The connection only reads, so a peer that vanished without a reset (a failover, a dropped
# route) would look alive for hours: TCP keepalives find it within ~11 s.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
              "keepalives_count": 3}
# A connection that was up this long resets the reconnect backoff (one dropped at once, by a
# proxy or idle_session_timeout, must not reconnect ten times a second).
STABLE_SECONDS = 10.0
# How soon a lane first asked for in this process is LISTENed to (its drains poll until then).
PICKUP_SECONDS = 0.25


def channel(lane: str) -> str:
    return f"notify_lane_{lane}"


def enabled() -> bool:
    return (bool(settings.NOTIFY["DRAIN_LISTEN"])
            and connections[DEFAULT_DB_ALIAS].vendor == "postgresql")


class Listener:
    """The process's listening thread and what it heard (see the module docstring)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.heard: Counter[str] = Counter()
        self.epoch = 0  # +1 each time the connection is (re)established
        self.up = False
        self.wanted: set[str] = set()  # lanes whose drains run in this process
        self.listening: set[str] = set()  # of them, LISTENed to on the current connection
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lane-listener", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def forked(self) -> bool:
        return self._pid != os.getpid()

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            wrapper = connections.create_connection(DEFAULT_DB_ALIAS)
            settings_dict = wrapper.settings_dict  # shared with every other connection: copy
            wrapper.settings_dict = {**settings_dict,
                                     "OPTIONS": {**settings_dict.get("OPTIONS", {}), **KEEPALIVES}}
            connected = time.monotonic()
            try:
                wrapper.ensure_connection()
                conn = wrapper.connection  # psycopg, autocommit
                conn.execute(f"SET application_name = '{APPLICATION_NAME}'")
                connected = time.monotonic()
                with self.cond:
                    self.up, self.epoch = True, self.epoch + 1
                    self.cond.notify_all()
                channels = {channel(lane): lane for lane in Lane.values}
                while not self._stop.is_set():
                    # Only the lanes drained here: a bulk worker is not woken by every password
                    # reset. A lane asked for meanwhile is listened to within PICKUP_SECONDS.
                    with self.cond:
                        new = sorted(self.wanted - self.listening)
                    for lane in new:
                        conn.execute(f"LISTEN {channel(lane)}")
                        with self.cond:
                            self.listening.add(lane)
                    for note in conn.notifies(timeout=PICKUP_SECONDS):
                        heard = channels.get(note.channel)
                        if heard is not None:
                            with self.cond:
                                self.heard[heard] += 1
                                self.cond.notify_all()
            except Exception:
                if not self._stop.is_set():
                    logger.warning("lane listener: connection lost; drains poll until it is back",
                                   exc_info=True)
            finally:
                with self.cond:
                    self.up = False
                    self.listening.clear()
                    self.cond.notify_all()
                try:
                    wrapper.close()
                except Exception:
                    logger.debug("lane listener: close failed", exc_info=True)
            if time.monotonic() - connected >= STABLE_SECONDS:
                backoff = 0.1
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)


_listener: Listener | None = None
_lock = threading.Lock()


def listener() -> Listener:
    """This process's listener, started on first use (again in a forked child)."""
    global _listener
    with _lock:
        if _listener is None or _listener.forked():
            _listener = Listener()
            _listener.start()
        return _listener


def stop() -> None:
    """Stop this process's listener and close its connection (tests, before dropping the DB)."""
    global _listener
    with _lock:
        if _listener is not None and not _listener.forked():
            _listener.stop()
        _listener = None


class Watch:
    """One drain's view of its lane's notifications."""

    def __init__(self, lane: str, source: Listener) -> None:
        self.lane = lane
        self._source = source
        self._seen: tuple[int, int] | None = None  # (epoch, heard) at the last look
        self._looked = 0.0

    def _now(self) -> tuple[int, int]:
        return self._source.epoch, self._source.heard[self.lane]

    def look(self) -> None:
        """Call before looking at the table."""
        with self._source.cond:
            heard = self._source.up and self.lane in self._source.listening
            self._seen = self._now() if heard else None
        self._looked = time.monotonic()

    def listening(self) -> bool:
        """Whether the last look was made while listening: wait() can then sleep long."""
        with self._source.cond:
            return self._seen is not None and self._source.up

    def changed(self) -> bool:
        """Whether the table may hold something the last look did not see."""
        with self._source.cond:
            return (self._seen is None or not self._source.up or self._now() != self._seen
                    or time.monotonic() - self._looked >= RECHECK_SECONDS)

    def wait(self, timeout: float) -> None:
        """Sleep up to `timeout`, less if a notification arrives or the listener goes down (the
        caller then polls). Not listening at the last look: a plain sleep, as the poll did."""
        end = time.monotonic() + timeout
        with self._source.cond:
            if self._seen is not None:
                while self._source.up and self._now() == self._seen:
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    self._source.cond.wait(left)
                return
        time.sleep(timeout)


def watch(lane: str) -> Watch | None:
    """A Watch on `lane`, or None where drains must poll (SQLite, DRAIN_LISTEN off)."""
    if not enabled():
        return None
    source = listener()
    with source.cond:
        source.wanted.add(lane)
    return Watch(lane, source)
