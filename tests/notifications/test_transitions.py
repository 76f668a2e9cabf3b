"""Each transition sets every field its meaning needs, whoever calls it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from notifications import transitions
from notifications.delivery import claim_batch
from notifications.models import DeadReason, DeliveryAttempt, Message, Outcome, Status
from notifications.services import notify

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")

ORDER = {"order_id": 3, "total": "$3", "items": [{"name": "Tea", "qty": 1}]}


def claimed(to: str = "ann@example.com") -> Message:
    message = notify(event="order.placed", to=to, data=ORDER)
    [row] = [m for m in claim_batch("transactional", 10) if m.pk == message.pk]
    return row


def fresh(message: Message) -> Message:
    return Message.objects.get(pk=message.pk)


def test_every_transition_in_the_table_has_its_function() -> None:
    for name in transitions.TRANSITIONS:
        assert callable(getattr(transitions, name)), name


def test_a_release_says_whether_it_refunds_the_attempt() -> None:
    refunded, kept = claimed("a@example.com"), claimed("b@example.com")
    due = timezone.now() + timedelta(seconds=10)

    for message, refund in ((refunded, True), (kept, False)):
        assert transitions.release([message.pk], token=message.lease_token, due=due,
                                   reason="handed back", refund=refund) == 1

    assert [(m.status, m.attempts, m.lease_until, m.last_error) for m in
            (fresh(refunded), fresh(kept))] == [
        (Status.RETRY, 0, None, "handed back"), (Status.RETRY, 1, None, "handed back")]


def test_an_expired_lease_goes_back_counted_and_on_record() -> None:
    message = claimed()

    assert transitions.lease_expired(message, now=timezone.now()) == Status.RETRY

    row = fresh(message)
    assert (row.status, row.attempts, row.lease_until) == (Status.RETRY, 1, None)
    assert row.last_error == transitions.LEASE_LOST
    assert list(DeliveryAttempt.objects.filter(message=row).values_list("outcome", flat=True)) \
        == [Outcome.LEASE_EXPIRED]
    # Another sweeper that read the same row finds nothing left to do, and records nothing.
    assert transitions.lease_expired(message, now=timezone.now()) is None
    assert DeliveryAttempt.objects.filter(message=row).count() == 1


def test_a_kill_needs_a_dead_reason_from_the_vocabulary() -> None:
    message = claimed()

    with pytest.raises(ValueError):
        transitions.kill([message.pk], token=message.lease_token, reason="gave_up",  # type: ignore[arg-type]
                         error="x")
    assert fresh(message).status == Status.PROCESSING

    transitions.kill([message.pk], token=message.lease_token, reason=DeadReason.EXPIRED,
                     error="late")
    row = fresh(message)
    assert (row.status, row.dead_reason, row.lease_until, row.last_error) == (
        Status.DEAD, "expired", None, "late")


def test_moves_out_of_processing_need_the_claims_token() -> None:
    message = claimed()
    stranger = type(message.lease_token)(int=0)

    assert transitions.mark_sent([message.pk], token=stranger, provider="default") == 0
    assert transitions.schedule_retry(message.pk, token=stranger, due=timezone.now(),
                                      error="x") == 0
    assert transitions.kill([message.pk], token=stranger, reason=DeadReason.EXPIRED,
                            error="x") == 0
    assert fresh(message).status == Status.PROCESSING


def test_requeue_resets_the_bookkeeping_and_can_repin(django_capture_on_commit_callbacks: Any
                                                      ) -> None:
    message = claimed()
    transitions.kill([message.pk], token=message.lease_token, reason=DeadReason.MAX_ATTEMPTS,
                     error="boom")
    now = timezone.now()

    assert transitions.requeue(message.pk, now=now, expires_at=now + timedelta(hours=1),
                               template_version_id=message.template_version_id) == 1
    assert transitions.requeue(message.pk, now=now, expires_at=None) == 0  # not dead any more

    row = fresh(message)
    assert (row.status, row.attempts, row.dead_reason, row.lease_until, row.lease_token,
            row.next_attempt_at, row.expires_at) == (
        Status.PENDING, 0, "", None, None, now, now + timedelta(hours=1))


def test_a_postgresql_claim_picks_its_rows_once_whatever_the_plan(django_db_blocker: Any) -> None:
    """The claim's locking pick (LIMIT ... FOR UPDATE SKIP LOCKED) must run exactly once. As an
    `id IN (subquery)` on a table without statistics, PostgreSQL re-ran it for every due row (a
    nested loop): one claim of 200 among 20,000 due rows ran 46 s and held up the other drains.
    And the rows it picked are then found through the primary key, not by scanning the queue."""
    from django.db import connection

    from notifications.delivery import _row_fields
    from notifications.services import notify_many

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement claim is PostgreSQL's")
    notify_many([{"event": "marketing.newsletter", "to": f"r{i}@example.com",
                  "data": {"headline": "h", "body": "b"}} for i in range(3000)])
    now = timezone.now()
    sql = transitions._claim_due_sql(_row_fields(), False, True, False)
    params = ["processing", now, "0" * 32, now + timedelta(seconds=60), "bulk", "pending",
              "retry", now, 10]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0][0]["Plan"]

    def lock_rows(node: dict[str, Any]) -> list[dict[str, Any]]:
        found = [node] if node["Node Type"] == "LockRows" else []
        for child in node.get("Plans", []):
            found += lock_rows(child)
        return found

    def scans(node: dict[str, Any]) -> list[tuple[str, str]]:
        found = [(node["Node Type"], node.get("Index Name", ""))] if "Scan" in node[
            "Node Type"] else []
        for child in node.get("Plans", []):
            if child.get("Parent Relationship") != "InitPlan":
                found += scans(child)
        return found

    [pick] = lock_rows(plan)
    assert pick["Actual Loops"] == 1
    # ... and the rows it picked are updated through the primary key, not a scan of the queue.
    outer = scans(plan)
    assert {index for _, index in outer if index} == {"notifications_message_pkey"}, outer
    assert "Seq Scan" not in {kind for kind, _ in outer}, outer
    assert Message.objects.filter(status=Status.PROCESSING).count() == 10


def test_mark_sent_keeps_our_id_where_the_provider_gave_none_and_stores_theirs() -> None:
    """One statement on PostgreSQL (two arrays), the ORM elsewhere: the same result."""
    queued = [notify(event="order.placed", to=to, data=ORDER).pk
              for to in ("ours@example.com", "theirs@example.com")]
    ours, theirs = sorted((m for m in claim_batch("transactional", 10) if m.pk in queued),
                          key=lambda m: m.pk)
    # An id stored before (a tracking lookup key) is kept where the provider gave none.
    Message.objects.filter(pk=ours.pk).update(provider_message_id="kept-1")
    moved = transitions.mark_sent([ours.pk, theirs.pk], token=ours.lease_token,
                                  provider="default", provider_ids={theirs.pk: "esp-42"})
    assert moved == 2
    for message, esp_id in ((ours, "kept-1"), (theirs, "esp-42")):
        row = fresh(message)
        assert (row.status, row.provider, row.provider_message_id, row.lease_until,
                row.last_error) == (Status.SENT, "default", esp_id, None, "")
        assert row.sent_at is not None
    # Sent is final for this transition: a second call moves nothing, and changes no id.
    assert transitions.mark_sent([theirs.pk], token=ours.lease_token, provider="default",
                                 provider_ids={theirs.pk: "esp-43"}) == 0
    assert fresh(theirs).provider_message_id == "esp-42"


def _plan(sql: str, params: list[Any], *, generic: bool = False) -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        if not generic:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            return cursor.fetchone()[0][0]["Plan"]
        # What a prepared statement runs once PostgreSQL settles on a generic plan: the
        # parameters unknown to the planner.
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute("PREPARE probe_plan(text, timestamptz) AS "
                       + sql.replace("%s", "$1", 1).replace("%s", "$2", 1))
        cursor.execute("EXPLAIN (FORMAT JSON) EXECUTE probe_plan(%s, %s)", params)
        plan = cursor.fetchone()[0][0]["Plan"]
        cursor.execute("DEALLOCATE probe_plan")
        return plan


def _scans(node: dict[str, Any]) -> list[tuple[str, str]]:
    found = [(node["Node Type"], node.get("Index Name", ""))] if "Scan" in node["Node Type"] \
        else []
    for child in node.get("Plans", []):
        found += _scans(child)
    return found


def test_a_postgresql_due_probe_stays_on_the_claim_index_once_prepared() -> None:
    """The waiting drains' probe is a prepared statement: its generic plan knows neither lane nor
    time, and must still match the partial claim index (statuses are literals in its text; as
    parameters a generic plan could not prove the index's WHERE and would scan the table)."""
    from django.db import connection

    from notifications.delivery import _DUE_NOW, _due_now

    if connection.vendor != "postgresql":
        pytest.skip("the prepared probe is PostgreSQL's")
    assert _due_now("transactional") is False
    notify(event="order.placed", to="due@example.com", data=ORDER)
    assert _due_now("transactional") is True and _due_now("bulk") is False
    plan = _plan(_DUE_NOW, ["transactional", timezone.now()], generic=True)
    assert _scans(plan) == [("Index Only Scan", "message_due_idx")], _scans(plan)


def _queued_and_analyzed(newsletters: int) -> None:
    """Queued bulk mail, and statistics taken while none of it is in flight (as autoanalyze
    mostly sees a queue: `processing` rare)."""
    from django.db import connection

    from notifications.services import notify_many

    notify_many([{"event": "marketing.newsletter", "to": f"r{i}@example.com",
                  "data": {"headline": "h", "body": "b"}} for i in range(newsletters)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE notifications_message")


def test_a_postgresql_mark_sent_finds_its_rows_by_primary_key() -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement mark_sent is PostgreSQL's")
    _queued_and_analyzed(3000)
    batch = claim_batch("bulk", 200)
    token, pks = batch[0].lease_token, [m.pk for m in batch]
    params = transitions._mark_sent_params(pks, token, "default",
                                           {pk: "esp" for pk in pks[::2]})
    scans = _scans(_plan(transitions._mark_sent_sql(), params))
    assert [scan for scan in scans if scan[0] != "Function Scan"] == [
        ("Index Scan", "notifications_message_pkey")], scans


def test_a_postgresql_move_finds_its_rows_by_primary_key_not_among_all_in_flight() -> None:
    """With `processing` rare in the statistics, `status IN ('processing')` made PostgreSQL scan
    the status index for every in-flight row of every lane and filter by id: one transactional
    email's retry read all the rows a bulk burst had in flight."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's planner")
    _queued_and_analyzed(3000)
    claim_batch("bulk", 500)  # a burst in flight
    message = claimed()
    with CaptureQueriesContext(connection) as queries:
        assert transitions.schedule_retry(message.pk, token=message.lease_token,
                                          due=timezone.now(), error="503") == 1
    [update] = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + update)
        scans = _scans(cursor.fetchone()[0][0]["Plan"])
    assert scans == [("Index Scan", "notifications_message_pkey")], scans


def _subplans(node: dict[str, Any]) -> Any:
    yield node
    for child in node.get("Plans", []):
        yield from _subplans(child)


def test_a_postgresql_one_statement_record_writes_the_totals_before_the_rollup() -> None:
    """mark_sent_recorded keeps record_counts' lock order (the /metrics totals, then the rollup
    row) inside one statement, where PostgreSQL does not promise an order of data-modifying WITH
    parts: the rollup's INSERT is gated by a one-time filter on a count of the totals' rows (an
    InitPlan, run to completion before it), and the totals read the count of moved messages."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement record is PostgreSQL's")
    notify(event="order.placed", to="plan@example.com", data=ORDER)
    [message] = claim_batch("transactional", 5)
    now = timezone.now()
    row = (message.pk, 1, now, 5, "sent", "", "", "", "esp", "p", "w")
    params = [*transitions._mark_sent_params([message.pk], message.lease_token, "p", {}),
              *transitions.attempt_arrays([row]),
              *transitions.totals.add_plus_params({}, ("transactional", "p", "sent", "")),
              "transactional", transitions.minute_param(now), "p"]
    plan = _plan(transitions._mark_sent_recorded_sql(), params)
    parts = {node["Subplan Name"]: node for node in _subplans(plan) if "Subplan Name" in node
             and node["Subplan Name"].startswith("CTE ")}

    def reads(part: str) -> set[str]:
        return {node["CTE Name"] for node in _subplans(parts[part])
                if node["Node Type"] == "CTE Scan"}

    assert reads("CTE n") == {"marked", "attempted"}
    assert reads("CTE counted") == {"n"}
    assert reads("CTE rolled") == {"n", "counted"}
    gate = next(node for node in _subplans(parts["CTE rolled"]) if "One-Time Filter" in node)
    assert gate["Node Type"] == "Result"
    assert all(p["Parent Relationship"] == "InitPlan" for p in parts["CTE rolled"]["Plans"]
               if any(n.get("CTE Name") == "counted" for n in _subplans(p)))
