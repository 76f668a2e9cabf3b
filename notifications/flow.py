"""Flow control per provider, shared by every worker on every host: a circuit breaker on the
failure rate, and a hold when the provider throttles.

The circuit breaker (the lab's circular buffer, where every worker sees it):
- `ring` holds the outcomes of the provider's last NOTIFY_BREAKER_WINDOW sends, whichever worker
  made them: 1 for a transient failure (5xx, connect error, timeout), 0 for an answer (sent, or a
  permanent refusal: the provider is up and judged the message). A 429 is neither: the provider
  is up and asked for less, which the hold below gives it. The ring starts with a failure:
  answers are written only while it holds one (before that they have nothing to outweigh), so a
  healthy provider costs no writes.
- closed -> open when at least MIN_CALLS sends are in the ring and FAILURE_RATE of them failed.
  While it is open nobody claims for that provider, so an outage does not burn attempts: the
  messages stay due, untouched, and sends already started finish (their outcomes do not count).
- open -> half-open after PAUSE seconds. One drain wins the probe (`probe_until` is its lease, so
  a prober that dies frees it) and sends one message, preferring one never tried, so no message
  pays for more than one probe. An answer closes the breaker (and empties the ring); a failure
  opens it for another pause.

The hold: a 429 (Retry-After honoured, else NOTIFY_THROTTLE_SECONDS) sets `hold_until`; no worker
starts a send to that provider before then. The worker that got the 429 holds at once; the others
learn it within REFRESH_SECONDS (they read the shared state that often while they send).

Where it lives: Redis when REDIS_URL is set (one key per provider, read-modify-write under WATCH,
Redis's clock), else the database (ProviderHealth, SELECT ... FOR UPDATE; PostgreSQL's clock).
Both run the same transition functions below. If Redis fails the database takes over, as for the
send rate (notifications/ratelimit.py). Drains write failures as they come (and answers while the
ring holds a failure) and otherwise read every REFRESH_SECONDS, before a claim as while they
send: a drain that saw the provider healthy (closed, no failure in the ring, no hold) less than
REFRESH_SECONDS ago claims on that view (the transactional lane claims an email or two at a
time, and a read per claim was a round trip per email), so another worker's news reaches it
within REFRESH_SECONDS either way. After anything else it reads before every claim (a probe is
taken in the store).
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from notifications.models import ProviderHealth
from notifications.redis_client import redis_client

logger = logging.getLogger(__name__)

# How long a probe may take before another drain may probe instead (its drain died).
PROBE_LEASE_SECONDS = 30.0
# How often a drain with nothing to write reads the shared state (opened by another worker?
# a 429 hold?), while it sends and before it claims.
REFRESH_SECONDS = 0.5


class Gate(enum.Enum):
    ALLOW = "allow"  # closed: claim and send
    PROBE = "probe"  # half-open and this drain won the probe: send one message
    DENY = "deny"  # open, or half-open with another drain probing


@dataclass(frozen=True)
class Health:
    """One provider's shared state (see the module docstring). Times on the store's clock."""

    ring: str = ""
    opened_until: float = 0.0
    probe_until: float = 0.0
    hold_until: float = 0.0
    trips: int = 0

    def state(self, now: float) -> str:
        if not self.opened_until:
            return "closed"
        return "open" if now < self.opened_until else "half_open"


@dataclass(frozen=True)
class View:
    """What a drain knows of a provider after asking: remaining seconds on its own clock."""

    state: str
    open_for: float  # seconds until half-open (0 when not open)
    hold_for: float  # seconds no send may start (0 when not held)
    trips: int = 0  # how often it has opened
    failing: int = 0  # failures in the ring


# --- the transitions, the same for every store ---------------------------------------------------

def _conf() -> tuple[int, int, float, float]:
    n = settings.NOTIFY
    return (n["BREAKER_WINDOW"], n["BREAKER_MIN_CALLS"], n["BREAKER_FAILURE_RATE"],
            n["BREAKER_PAUSE_SECONDS"])


def recorded(health: Health, now: float, failures: Sequence[bool], *, throttle: float = 0.0,
             probe: bool = False) -> Health:
    """`health` after a drain's report: `failures` one bool per send that counts (see the module
    docstring), `throttle` seconds to hold (0: none), `probe` if these are the probe's."""
    window, min_calls, rate, pause = _conf()
    if throttle > 0:
        health = replace(health, hold_until=max(health.hold_until, now + throttle))
    if probe:
        if any(failures):
            return replace(health, opened_until=now + pause, probe_until=0.0,
                           trips=health.trips + 1)
        if failures:
            return replace(health, ring="", opened_until=0.0, probe_until=0.0)
        return replace(health, probe_until=0.0)  # nothing was sent: let another drain probe
    if not failures or window <= 0 or health.state(now) != "closed":
        # Sends that were in flight when it opened prove nothing new.
        return health
    ring = (health.ring + "".join("1" if f else "0" for f in failures))[-window:]
    if len(ring) >= min_calls and ring.count("1") >= rate * len(ring):
        return replace(health, ring="", opened_until=now + pause, trips=health.trips + 1)
    return replace(health, ring=ring)


def permitted(health: Health, now: float) -> tuple[Health, Gate]:
    """May a drain claim now? In half-open, the first to ask takes the probe."""
    state = health.state(now)
    if state == "closed":
        return health, Gate.ALLOW
    if state == "half_open" and health.probe_until <= now:
        return replace(health, probe_until=now + PROBE_LEASE_SECONDS), Gate.PROBE
    return health, Gate.DENY


def view_of(health: Health, now: float) -> View:
    return View(health.state(now), max(0.0, health.opened_until - now) if health.opened_until
                else 0.0, max(0.0, health.hold_until - now), health.trips,
                health.ring.count("1"))


# --- stores ------------------------------------------------------------------------------------

Change = Callable[[Health, float], Health]


class _DatabaseStore:
    def change(self, provider: str, change: Change) -> tuple[Health, float]:
        with transaction.atomic():
            now = _db_now()
            row = ProviderHealth.objects.select_for_update().filter(provider=provider).first()
            if row is None:
                # Two workers may both get here: the loser's insert is ignored, both then lock.
                ProviderHealth.objects.bulk_create([ProviderHealth(provider=provider)],
                                                   ignore_conflicts=True)
                row = ProviderHealth.objects.select_for_update().get(provider=provider)
            old = Health(row.ring, row.opened_until, row.probe_until, row.hold_until, row.trips)
            new = change(old, now)
            if new != old:
                ProviderHealth.objects.filter(provider=provider).update(**asdict(new))
        return new, now

    def read(self, provider: str) -> tuple[Health, float]:
        if connection.vendor == "postgresql":  # the clock and the row in one round trip
            with connection.cursor() as cursor:
                cursor.execute(_PG_READ, [provider])
                now, *fields = cursor.fetchone()
            return (Health(*fields) if fields[0] is not None else Health()), float(now)
        now = _db_now()
        row = ProviderHealth.objects.filter(provider=provider).values(
            "ring", "opened_until", "probe_until", "hold_until", "trips").first()
        return (Health(**row) if row else Health()), now


_PG_READ = (
    'SELECT EXTRACT(EPOCH FROM clock_timestamp()), h."ring", h."opened_until", '
    'h."probe_until", h."hold_until", h."trips" FROM (SELECT 1) AS one '
    f'LEFT JOIN "{ProviderHealth._meta.db_table}" h ON h."provider" = %s'
)


def _db_now() -> float:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())")
            return float(cursor.fetchone()[0])
    return time.time()  # SQLite: one host, its clock


class _RedisStore:
    def __init__(self, url: str) -> None:
        self._client = redis_client(url)

    @staticmethod
    def _key(provider: str) -> str:
        return f"notify:flow:{provider}"

    def change(self, provider: str, change: Change) -> tuple[Health, float]:
        import redis

        key = self._key(provider)
        with self._client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    seconds, micros = pipe.time()
                    now = seconds + micros / 1_000_000
                    old = _loads(raw)
                    new = change(old, now)
                    if new == old:
                        pipe.unwatch()
                        return old, now
                    pipe.multi()
                    pipe.set(key, json.dumps(asdict(new)), ex=7 * 86400)
                    pipe.execute()
                    return new, now
                except redis.WatchError:  # another worker wrote first: read again
                    continue

    def read(self, provider: str) -> tuple[Health, float]:
        with self._client.pipeline(transaction=False) as pipe:
            raw, (seconds, micros) = pipe.get(self._key(provider)).time().execute()
        return _loads(raw), seconds + micros / 1_000_000


def _loads(raw: bytes | None) -> Health:
    return Health(**json.loads(raw)) if raw else Health()


@cache
def _redis_store(url: str) -> _RedisStore:
    return _RedisStore(url)


def _through_store(op: str, provider: str, *args: Any) -> tuple[Health, float]:
    if settings.REDIS_URL:
        try:
            return getattr(_redis_store(settings.REDIS_URL), op)(provider, *args)
        except Exception:  # Redis down or restarting: the database is the shared place then
            logger.warning("flow control: Redis failed, using the database", exc_info=True)
    return getattr(_DatabaseStore(), op)(provider, *args)


# --- what a drain uses --------------------------------------------------------------------------

class ProviderFlow:
    """A drain's handle on one provider's shared flow control, with its last view of it."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.view = View("closed", 0.0, 0.0)
        self._seen_at = float("-inf")  # never read: the first permit() reads the store

    @property
    def open(self) -> bool:
        """As last seen: no new send may start (half-open counts: only the probe sends)."""
        return self.view.state != "closed"

    @property
    def hold_for(self) -> float:
        """Seconds from now until sends may start again after a 429 (as last seen)."""
        return max(0.0, self.view.hold_for - (time.monotonic() - self._seen_at))

    def permit(self) -> Gate:
        if (self.view.state == "closed" and not self.view.failing and not self.hold_for
                and time.monotonic() - self._seen_at < REFRESH_SECONDS):
            return Gate.ALLOW  # seen healthy just now (module docstring)
        health, now = _through_store("read", self.provider)  # the hold matters without a breaker
        if settings.NOTIFY["BREAKER_WINDOW"] <= 0:
            self._see(replace(health, opened_until=0.0), now)
            return Gate.ALLOW
        if health.state(now) == "half_open" and health.probe_until <= now:
            gate_box: list[Gate] = []

            def take(h: Health, t: float) -> Health:
                new, gate = permitted(h, t)
                gate_box[:] = [gate]
                return new

            health, now = _through_store("change", self.provider, take)
            gate = gate_box[0]
        else:
            gate = permitted(health, now)[1]
        self._see(health, now)
        return gate

    def report(self, failures: Sequence[bool], *, throttle: float = 0.0,
               probe: bool = False) -> View:
        """Add this drain's outcomes to the shared state; returns (and keeps) the new view.

        Successes are written only while the ring holds a failure (as last seen): with none
        they have nothing to outweigh, and a healthy provider then costs one cheap read every
        REFRESH_SECONDS instead of a locked write per report."""
        counted = failures if settings.NOTIFY["BREAKER_WINDOW"] > 0 else []
        if not (probe or throttle > 0 or any(counted) or (counted and self.view.failing)):
            if time.monotonic() - self._seen_at >= REFRESH_SECONDS:
                self._see(*_through_store("read", self.provider))  # another worker's news
            return self.view
        opened: list[bool] = []

        def change(h: Health, t: float) -> Health:
            new = recorded(h, t, failures, throttle=throttle, probe=probe)
            opened[:] = [new.trips > h.trips]
            return new

        health, now = _through_store("change", self.provider, change)
        self._see(health, now)
        if opened and opened[0]:
            logger.warning("provider %s: circuit breaker open for %.1f s", self.provider,
                           self.view.open_for)
        return self.view

    def _see(self, health: Health, now: float) -> None:
        self.view = view_of(health, now)
        self._seen_at = time.monotonic()

    @property
    def wait(self) -> float:
        """Seconds until this provider may be asked again (as last seen)."""
        return self.view.open_for if self.view.state == "open" else 1.0


def provider_states(providers: Sequence[str]) -> dict[str, View]:
    """Each provider's breaker and hold as the store has them (for stats and the dashboard)."""
    states = {}
    for name in providers:
        health, now = _through_store("read", name)
        states[name] = view_of(health, now)
    return states
