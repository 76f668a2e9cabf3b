"""Flow control per provider shared by every worker: the breaker on a failure rate, half-open
probes, and the hold a 429 asks for; in the database and in Redis."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import pytest
import redis

from notifications import flow
from notifications.flow import Gate, Health, ProviderFlow, permitted, recorded
from notifications.models import ProviderHealth

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
FAIL, OK = True, False


@pytest.fixture(autouse=True)
def breaker_settings(settings: Any) -> None:
    settings.NOTIFY = {**settings.NOTIFY, "BREAKER_WINDOW": 10, "BREAKER_MIN_CALLS": 4,
                       "BREAKER_FAILURE_RATE": 0.5, "BREAKER_PAUSE_SECONDS": 10.0}


# --- the transitions ----------------------------------------------------------------------------

def test_it_opens_on_the_failure_rate_once_it_has_the_minimum_calls() -> None:
    h = recorded(Health(), 100.0, [FAIL, FAIL, FAIL])
    assert h.state(100.0) == "closed"  # 3 of 3 failed, but fewer than 4 calls

    h = recorded(h, 100.0, [OK])
    assert (h.state(100.0), h.opened_until, h.trips) == ("open", 110.0, 1)
    assert h.ring == ""  # a fresh window after it closes again


def test_a_failure_rate_below_the_threshold_keeps_it_closed() -> None:
    h = recorded(Health(), 0.0, [FAIL, OK, OK, FAIL, OK, OK, FAIL, OK, OK, OK])
    assert h.state(0.0) == "closed"
    # The ring keeps only the last WINDOW outcomes: the old successes fall off the end.
    h = recorded(h, 0.0, [FAIL] * 4)
    assert h.state(0.0) == "open"


def test_outcomes_reported_while_it_is_open_change_nothing() -> None:
    """Sends already in flight when it opened finish; their failures prove nothing new."""
    opened = recorded(Health(), 0.0, [FAIL] * 4)
    assert recorded(opened, 1.0, [FAIL] * 20) == opened
    assert recorded(opened, 1.0, [OK] * 20) == opened


def test_after_the_pause_one_drain_probes_and_an_answer_closes_it() -> None:
    opened = recorded(Health(), 0.0, [FAIL] * 4)
    assert permitted(opened, 5.0)[1] is Gate.DENY

    probing, gate = permitted(opened, 10.0)
    assert gate is Gate.PROBE
    assert permitted(probing, 11.0)[1] is Gate.DENY  # one probe at a time

    closed = recorded(probing, 12.0, [OK], probe=True)
    assert closed.state(12.0) == "closed" and permitted(closed, 12.0)[1] is Gate.ALLOW


def test_a_failed_probe_opens_it_for_another_pause() -> None:
    probing, _ = permitted(recorded(Health(), 0.0, [FAIL] * 4), 10.0)

    again = recorded(probing, 12.0, [FAIL], probe=True)

    assert (again.state(12.0), again.opened_until, again.trips) == ("open", 22.0, 2)
    assert permitted(again, 21.0)[1] is Gate.DENY


def test_a_probe_whose_drain_died_is_taken_over_after_its_lease() -> None:
    probing, _ = permitted(recorded(Health(), 0.0, [FAIL] * 4), 10.0)

    assert permitted(probing, 10.0 + flow.PROBE_LEASE_SECONDS + 0.1)[1] is Gate.PROBE


def test_a_probe_that_sent_nothing_lets_another_drain_probe() -> None:
    probing, _ = permitted(recorded(Health(), 0.0, [FAIL] * 4), 10.0)

    freed = recorded(probing, 10.5, [], probe=True)

    assert freed.state(10.5) == "half_open" and permitted(freed, 10.5)[1] is Gate.PROBE


def test_a_throttle_holds_without_touching_the_breaker() -> None:
    h = recorded(Health(), 100.0, [], throttle=2.5)
    assert (h.hold_until, h.state(100.0), h.ring) == (102.5, "closed", "")
    # A shorter hold does not cut a longer one short.
    assert recorded(h, 101.0, [], throttle=0.5).hold_until == 102.5


# --- shared by every worker, in either store --------------------------------------------------

@pytest.fixture(params=["database", "redis"])
def store(request: Any, settings: Any, db: Any) -> str:
    settings.REDIS_URL = REDIS_URL if request.param == "redis" else ""
    if request.param == "redis":
        redis.Redis.from_url(REDIS_URL).delete("notify:flow:p1")
    return request.param


def test_two_workers_share_one_breaker(store: str) -> None:
    one, two = ProviderFlow("p1"), ProviderFlow("p1")
    assert two.permit() is Gate.ALLOW

    one.report([FAIL, FAIL])
    two.report([FAIL, FAIL])  # four failures between them: the rate and the minimum are met

    assert one.permit() is Gate.DENY and two.permit() is Gate.DENY
    assert two.open and 9.0 < two.wait <= 10.0


def test_only_one_worker_wins_the_probe_and_its_answer_closes_it_for_all(
    store: str, settings: Any,
) -> None:
    settings.NOTIFY = {**settings.NOTIFY, "BREAKER_PAUSE_SECONDS": 0.0}
    one, two = ProviderFlow("p1"), ProviderFlow("p1")
    one.report([FAIL] * 4)

    gates = [one.permit(), two.permit()]
    assert sorted(g.value for g in gates) == ["deny", "probe"]
    prober = one if gates[0] is Gate.PROBE else two
    prober.report([OK], probe=True)

    assert one.permit() is Gate.ALLOW and two.permit() is Gate.ALLOW


def test_a_drain_that_saw_it_healthy_just_now_claims_without_asking_again(
    store: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A healthy provider costs one read per REFRESH_SECONDS, not one per claim; another
    worker's opening is seen once that view is older than REFRESH_SECONDS."""
    reads: list[str] = []
    real = flow._through_store

    def counted(op: str, *args: Any) -> Any:
        reads.append(op)
        return real(op, *args)

    monkeypatch.setattr(flow, "_through_store", counted)
    clock = [1000.0]
    monkeypatch.setattr(flow.time, "monotonic", lambda: clock[0])
    mine, other = ProviderFlow("p1"), ProviderFlow("p1")

    assert mine.permit() is Gate.ALLOW and reads == ["read"]  # a new drain reads first
    clock[0] += flow.REFRESH_SECONDS / 2
    assert mine.permit() is Gate.ALLOW and reads == ["read"]  # seen healthy just now

    other.report([FAIL] * 4)  # another worker opens it
    assert mine.permit() is Gate.ALLOW  # the view is still fresh: at most REFRESH_SECONDS late
    clock[0] += flow.REFRESH_SECONDS / 2
    assert mine.permit() is Gate.DENY
    assert mine.permit() is Gate.DENY and reads[-2:] == ["read", "read"]  # open: read each time

    # A failure in the window, or a hold, seen by this drain: it reads before every claim.
    for seen in ({"failing": 1}, {"hold_for": 3.0}):
        watchful = ProviderFlow("p2")
        watchful.permit()
        watchful.view = replace(watchful.view, **seen)
        before = len(reads)
        watchful.permit()
        assert len(reads) == before + 1, seen


def test_a_hold_reported_by_one_worker_is_seen_by_another(store: str) -> None:
    ProviderFlow("p1").report([], throttle=3.0)

    other = ProviderFlow("p1")
    assert other.permit() is Gate.ALLOW
    assert 2.5 < other.hold_for <= 3.0


def test_when_redis_fails_the_database_takes_over(settings: Any, db: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    one = ProviderFlow("p1")
    one.report([FAIL] * 4)

    settings.REDIS_URL = ""
    assert ProviderFlow("p1").permit() is Gate.DENY  # the state went to the database


def test_a_breaker_with_no_window_never_opens(settings: Any, db: Any) -> None:
    settings.NOTIFY = {**settings.NOTIFY, "BREAKER_WINDOW": 0}
    one = ProviderFlow("p1")
    one.report([FAIL] * 50)
    assert one.permit() is Gate.ALLOW and not one.open


def test_a_healthy_provider_costs_no_writes(db: Any) -> None:
    ProviderFlow("p1").report([OK] * 50)

    assert not ProviderHealth.objects.filter(provider="p1").exists()


def test_once_the_ring_holds_a_failure_answers_are_written_too(db: Any) -> None:
    worker = ProviderFlow("p1")
    worker.report([OK, OK])  # nothing to outweigh yet
    worker.report([OK, FAIL])
    worker.report([OK, OK, OK])

    assert ProviderHealth.objects.get(provider="p1").ring == "01000"
