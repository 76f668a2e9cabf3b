"""Prove the fake Postmark and SMTP servers behave, using the real client code.

These tests also pin down the exact exceptions django-anymail's Postmark backend and
Django's SMTP backend raise for each failure mode (the error classifier relies on them).
"""

from __future__ import annotations

import smtplib
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest
import requests
import urllib3
from anymail.exceptions import (
    AnymailAPIError,
    AnymailError,
    AnymailRecipientsRefused,
    AnymailRequestsAPIError,
)
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.test import override_settings

from tests.fakes import FakePostmark, FakeSMTP
from tests.fakes._common import free_port
from tests.fakes.postmark import FaultMix, parse_faults

POSTMARK_BACKEND = "anymail.backends.postmark.EmailBackend"
TOKEN = "test-token"


# -- helpers ------------------------------------------------------------------------


@pytest.fixture
def postmark():
    with FakePostmark(server_token=TOKEN) as fake:
        settings = {
            "POSTMARK_SERVER_TOKEN": TOKEN,
            "POSTMARK_API_URL": fake.url,
            "REQUESTS_TIMEOUT": 1,
        }
        with override_settings(ANYMAIL=settings):
            yield fake


@pytest.fixture
def smtp():
    with FakeSMTP() as fake:
        yield fake


def make_message(to, subject="Hello", message_id="<m1@test.example>", **kwargs):
    if isinstance(to, str):
        to = [to]
    headers = {"Message-ID": message_id} if message_id else {}
    return EmailMessage(subject, "Body", "sender@example.com", to, headers=headers, **kwargs)


def send_postmark(message, **backend_kwargs):
    connection = get_connection(POSTMARK_BACKEND, **backend_kwargs)
    return connection.send_messages([message])


def send_smtp(fake, message, timeout=1):
    backend = SMTPBackend(host=fake.host, port=fake.port, timeout=timeout)
    return backend.send_messages([message])


# -- FakePostmark ---------------------------------------------------------------------


def test_postmark_url_and_lifecycle():
    fake = FakePostmark()
    with pytest.raises(RuntimeError):
        fake.url  # noqa: B018
    with fake:
        assert fake.url == f"http://127.0.0.1:{fake.port}/"
        assert requests.get(fake.url + "nothing", timeout=1).status_code == 404
    with pytest.raises(requests.ConnectionError):
        requests.post(fake.url + "email", json={}, timeout=1)


def test_postmark_200_is_sent(postmark):
    msg = make_message("Someone <A@Example.com>", message_id="<abc@test.example>")
    assert send_postmark(msg) == 1

    assert msg.anymail_status.status == {"sent"}
    [rec] = postmark.accepted
    assert msg.anymail_status.message_id == rec.postmark_message_id
    assert rec.recipient == "a@example.com"
    assert rec.path == "/email"
    assert rec.mode == "200" and rec.status == 200 and rec.error_code == 0
    assert postmark.wait_for(lambda: rec.write_ok is True, timeout=1)
    assert rec.subject == "Hello"
    assert rec.message_id == "<abc@test.example>"
    assert rec.headers["Message-ID"] == "<abc@test.example>"
    assert rec.http_headers["X-Postmark-Server-Token"] == TOKEN
    assert postmark.accepted_for("a@example.com") == [rec]
    assert postmark.delivered_for("A@EXAMPLE.COM") == [rec]
    assert postmark.count_accepted_by_message_id() == {"<abc@test.example>": 1}


def test_postmark_log_lists_each_message_after_a_seq(postmark):
    postmark.script("b@example.com", ["503"])
    send_postmark(make_message("a@example.com", message_id="<a@test.example>"))
    with pytest.raises(AnymailAPIError):
        send_postmark(make_message("b@example.com", message_id="<b@test.example>"))

    log = requests.get(f"{postmark.url}_fake/log", timeout=5).json()
    assert [(e["recipient"], e["message_id"], e["status"], e["accepted"]) for e in log] == [
        ("a@example.com", "<a@test.example>", 200, True),
        ("b@example.com", "<b@test.example>", 503, False),
    ]
    later = requests.get(f"{postmark.url}_fake/log?since={log[0]['seq']}", timeout=5).json()
    assert [e["recipient"] for e in later] == ["b@example.com"]


@pytest.mark.parametrize("mode", ["503", "500", "401", "502"])
def test_postmark_http_errors(postmark, mode):
    postmark.script("a@example.com", [mode])
    with pytest.raises(AnymailAPIError) as info:
        send_postmark(make_message("a@example.com"))

    exc = info.value
    assert type(exc) is AnymailRequestsAPIError
    assert isinstance(exc, requests.HTTPError)
    assert exc.status_code == int(mode)
    assert exc.response.status_code == int(mode)
    assert exc.__cause__ is None
    assert postmark.accepted == []
    [rec] = postmark.requests
    assert rec.mode == mode and rec.status == int(mode)


def test_postmark_wrong_token_is_401_and_keeps_script(postmark):
    postmark.script("a@example.com", ["503"])
    with pytest.raises(AnymailRequestsAPIError) as info:
        send_postmark(make_message("a@example.com"), server_token="wrong")
    assert info.value.status_code == 401
    assert info.value.response.json()["ErrorCode"] == 10
    assert postmark.requests[0].mode == "bad-token"
    assert postmark.remaining("a@example.com") == ["503"]


def test_postmark_429_retry_after(postmark):
    postmark.script("a@example.com", ["429:2", "429"])
    with pytest.raises(AnymailRequestsAPIError) as info:
        send_postmark(make_message("a@example.com"))
    exc = info.value
    assert exc.status_code == 429
    assert exc.response.headers["Retry-After"] == "2"  # str; case-insensitive dict

    with pytest.raises(AnymailRequestsAPIError) as info:
        send_postmark(make_message("a@example.com"))
    assert info.value.status_code == 429
    assert "Retry-After" not in info.value.response.headers


def test_postmark_422_invalid_address_is_recipients_refused(postmark):
    postmark.script("a@example.com", ["422"])
    msg = make_message("a@example.com")
    with pytest.raises(AnymailRecipientsRefused) as info:
        send_postmark(msg)

    exc = info.value
    assert isinstance(exc, AnymailError)
    assert not isinstance(exc, AnymailAPIError)
    assert not isinstance(exc, requests.HTTPError)
    assert exc.status_code is None
    assert exc.response.status_code == 422
    assert exc.response.json()["ErrorCode"] == 300
    assert exc.email_message is msg
    assert msg.anymail_status.status == {"invalid"}
    assert msg.anymail_status.recipients["a@example.com"].status == "invalid"
    assert postmark.accepted == []


def test_postmark_406_inactive_is_recipients_refused(postmark):
    postmark.script("a@example.com", ["406"])
    msg = make_message("a@example.com")
    with pytest.raises(AnymailRecipientsRefused) as info:
        send_postmark(msg)
    assert info.value.response.status_code == 422
    assert info.value.response.json()["ErrorCode"] == 406
    assert msg.anymail_status.status == {"rejected"}


def test_postmark_422_with_other_recipients_does_not_raise(postmark):
    # Postmark rejects the whole message, but anymail only marks the named address.
    postmark.script("a@example.com", ["422"])
    msg = make_message(["a@example.com", "b@example.com"])
    assert send_postmark(msg) == 1
    assert msg.anymail_status.recipients["a@example.com"].status == "invalid"
    assert msg.anymail_status.recipients["b@example.com"].status == "unknown"
    assert postmark.accepted == []


def test_postmark_hang_times_out(postmark):
    postmark.script("a@example.com", ["hang:3"])
    started = time.monotonic()
    with pytest.raises(AnymailRequestsAPIError) as info:
        send_postmark(make_message("a@example.com"))
    assert time.monotonic() - started < 2.5

    exc = info.value
    # dynamic class named "AnymailRequestsAPIError", subclass of both
    assert type(exc) is not AnymailRequestsAPIError
    assert type(exc).__name__ == "AnymailRequestsAPIError"
    assert isinstance(exc, requests.exceptions.ReadTimeout)
    assert isinstance(exc, requests.exceptions.Timeout)
    assert exc.status_code is None and exc.response is None
    assert type(exc.__cause__) is requests.exceptions.ReadTimeout
    assert exc.__context__ is exc.__cause__
    assert isinstance(exc.__cause__.args[0], urllib3.exceptions.ReadTimeoutError)
    [rec] = postmark.requests
    assert rec.mode == "hang:3" and rec.status is None
    assert not rec.accepted and not rec.delivered
    # stop() wakes the sleeping handler instead of waiting 3 s
    stop_started = time.monotonic()
    postmark.stop()
    assert time.monotonic() - stop_started < 1
    assert postmark.wait_for(lambda: rec.write_ok is False, timeout=1)
    assert not rec.delivered


def test_postmark_hang_counts_as_delivered_after_sleep(postmark):
    postmark.script("a@example.com", ["hang:1.2"])
    with pytest.raises(requests.exceptions.ReadTimeout):
        send_postmark(make_message("a@example.com", message_id="<h@test.example>"))
    assert postmark.wait_for(lambda: postmark.delivered, timeout=3)
    assert postmark.accepted == []
    assert postmark.count_delivered_by_message_id() == {"<h@test.example>": 1}


def test_postmark_reset_is_connection_error(postmark):
    postmark.script("a@example.com", ["reset"])
    with pytest.raises(AnymailRequestsAPIError) as info:
        send_postmark(make_message("a@example.com"))

    exc = info.value
    assert type(exc).__name__ == "AnymailRequestsAPIError"
    assert isinstance(exc, requests.exceptions.ConnectionError)
    assert exc.status_code is None and exc.response is None
    cause = exc.__cause__
    assert type(cause) is requests.exceptions.ConnectionError
    protocol_error = cause.args[0]
    assert isinstance(protocol_error, urllib3.exceptions.ProtocolError)
    assert isinstance(protocol_error.args[1], ConnectionResetError)
    [rec] = postmark.requests
    assert rec.mode == "reset" and rec.status is None and not rec.delivered


def test_postmark_scripts_are_consumed_in_order_per_recipient(postmark):
    postmark.script("a@example.com", ["503", "429:1", "200"])
    postmark.script("b@example.com", ["422"])
    outcomes = []
    for to in [
        "a@example.com",
        "b@example.com",
        "a@example.com",
        "a@example.com",
        "b@example.com",
        "a@example.com",
    ]:
        try:
            send_postmark(make_message(to))
            outcomes.append("sent")
        except AnymailRecipientsRefused:
            outcomes.append("refused")
        except AnymailRequestsAPIError as exc:
            outcomes.append(exc.status_code)
    assert outcomes == [503, "refused", 429, "sent", "sent", "sent"]
    assert [r.mode for r in postmark.requests_for("a@example.com")] == [
        "503",
        "429:1",
        "200",
        "200",
    ]
    assert postmark.remaining("a@example.com") == []
    assert len(postmark.accepted_for("a@example.com")) == 2
    assert len(postmark.accepted_for("b@example.com")) == 1


def test_postmark_global_mode_default_mode_and_reset(postmark):
    postmark.script("a@example.com", ["422"])
    postmark.set_global_mode("503")
    with pytest.raises(AnymailRequestsAPIError) as info:
        send_postmark(make_message("a@example.com"))
    assert info.value.status_code == 503
    assert postmark.remaining("a@example.com") == ["422"]  # not consumed
    postmark.set_global_mode(None)
    with pytest.raises(AnymailRecipientsRefused):
        send_postmark(make_message("a@example.com"))

    postmark.default_mode = "500"
    with pytest.raises(AnymailRequestsAPIError) as info:
        send_postmark(make_message("c@example.com"))
    assert info.value.status_code == 500

    postmark.reset()
    assert postmark.requests == [] and postmark.default_mode == "200"
    send_postmark(make_message("c@example.com"))
    assert len(postmark.accepted) == 1
    with pytest.raises(ValueError):
        postmark.script("a@example.com", ["bogus"])


def test_postmark_batch_endpoint(postmark):
    # merge_metadata makes anymail use /email/batch with one message per "To"
    postmark.script("b@example.com", ["422"])
    msg = make_message(["a@example.com", "b@example.com"], message_id=None)
    msg.merge_metadata = {"a@example.com": {"n": 1}, "b@example.com": {"n": 2}}
    assert send_postmark(msg) == 1

    assert msg.anymail_status.recipients["a@example.com"].status == "sent"
    assert msg.anymail_status.recipients["b@example.com"].status == "invalid"
    assert [r.path for r in postmark.requests] == ["/email/batch", "/email/batch"]
    [rec] = postmark.accepted
    assert rec.recipient == "a@example.com"
    assert msg.anymail_status.recipients["a@example.com"].message_id == rec.postmark_message_id


def test_wait_for_returns_last_value(postmark):
    assert postmark.wait_for(lambda: 7, timeout=0.1) == 7
    started = time.monotonic()
    assert postmark.wait_for(lambda: [], timeout=0.1) == []
    assert time.monotonic() - started >= 0.1


def test_fault_mix_draws_each_mode_at_its_rate_the_same_way_for_a_seed():
    mix = {"503": 0.20, "429:1": 0.05, "hang:2": 0.05, "reset": 0.02, "slow:0.8": 0.10}
    recipients = [f"r{i}@example.com" for i in range(4000)]
    drawn = [FaultMix(mix, seed=1).draw(r) for r in recipients]

    counts = Counter(drawn)
    for mode, share in mix.items():  # 4,000 draws: within 4 standard deviations of the share
        assert abs(counts[mode] / 4000 - share) < 4 * (share * (1 - share) / 4000) ** 0.5
    assert abs(counts[None] / 4000 - 0.58) < 0.04  # the rest: the default mode
    # A recipient's n-th draw depends on the seed, the recipient and n, not on the order the
    # draws come in (concurrent requests arrive in any order).
    again = FaultMix(mix, seed=1)
    assert [again.draw(r) for r in reversed(recipients)] == list(reversed(drawn))
    assert [FaultMix(mix, seed=2).draw(r) for r in recipients] != drawn
    one = FaultMix({"503": 0.5}, seed=1)
    assert {one.draw("a@example.com") for _ in range(40)} == {"503", None}  # per try, too


@pytest.mark.parametrize("mix", [{"503": 0.7, "reset": 0.4}, {"503": -0.1}, {"bogus": 0.1}])
def test_fault_mix_refuses_a_bad_mix(mix):
    with pytest.raises(ValueError):
        FaultMix(mix)


def test_parse_faults():
    assert parse_faults("503=0.2, 429:1=0.05,hang:2=0.05,slow:0.8=0.1,") == {
        "503": 0.2, "429:1": 0.05, "hang:2": 0.05, "slow:0.8": 0.1}
    with pytest.raises(ValueError):
        parse_faults("503")


def test_postmark_faults_apply_when_no_script_does(postmark):
    postmark.set_faults({"503": 1.0}, seed=3)
    postmark.script("a@example.com", ["200"])
    send_postmark(make_message("a@example.com"))  # the script first
    with pytest.raises(AnymailRequestsAPIError) as info:
        send_postmark(make_message("a@example.com"))
    assert info.value.status_code == 503
    assert [r.mode for r in postmark.requests] == ["200", "503"]
    assert postmark.faults == {"503": 1.0}

    postmark.set_faults(None)
    send_postmark(make_message("a@example.com"))
    assert postmark.requests[-1].accepted


def test_postmark_slow_answers_200_late_and_counts_as_accepted(postmark):
    postmark.script("a@example.com", ["slow:0.3", "slow:1.5"])
    started = time.monotonic()
    msg = make_message("a@example.com", message_id="<s@test.example>")
    assert send_postmark(msg) == 1
    assert time.monotonic() - started >= 0.3
    assert msg.anymail_status.status == {"sent"}

    # The client (timeout 1 s) gives up first, but the provider took the message:
    # accepted-then-timeout.
    with pytest.raises(requests.exceptions.ReadTimeout):
        send_postmark(make_message("a@example.com", message_id="<s@test.example>"))
    assert postmark.wait_for(lambda: len(postmark.accepted) == 2, timeout=3)
    assert [r.mode for r in postmark.accepted] == ["slow:0.3", "slow:1.5"]
    assert postmark.count_delivered_by_message_id() == {"<s@test.example>": 2}


def test_postmark_permanent_domain_is_always_422(postmark):
    postmark.permanent_domains = {"invalid.example"}
    postmark.set_faults({"503": 1.0})
    for _ in range(3):
        with pytest.raises(AnymailRecipientsRefused):
            send_postmark(make_message("Bad <Someone@Invalid.Example>"))
    assert [r.mode for r in postmark.requests] == ["422"] * 3
    # A script or a global mode still decides first.
    postmark.script("x@invalid.example", ["200"])
    send_postmark(make_message("x@invalid.example"))
    postmark.set_global_mode("500")
    with pytest.raises(AnymailRequestsAPIError) as info:
        send_postmark(make_message("x@invalid.example"))
    assert info.value.status_code == 500

    postmark.reset()
    assert postmark.permanent_domains == set() and postmark.faults == {}


def test_postmark_mode_endpoint_takes_the_provider_down_and_back(postmark):
    answer = requests.post(f"{postmark.url}_fake/mode", json={"mode": "503"}, timeout=5)
    assert answer.status_code == 200 and answer.json() == {"mode": "503"}
    with pytest.raises(AnymailRequestsAPIError) as info:
        send_postmark(make_message("a@example.com"))
    assert info.value.status_code == 503

    answer = requests.post(f"{postmark.url}_fake/mode", json={"mode": None}, timeout=5)
    assert answer.json() == {"mode": None}
    send_postmark(make_message("a@example.com"))
    for bad in ({"mode": "bogus"}, {}, ["503"]):
        answer = requests.post(f"{postmark.url}_fake/mode", json=bad, timeout=5)
        assert answer.status_code == 400
    assert [r.mode for r in postmark.requests] == ["503", "200"]


def test_postmark_in_flight_ports_name_the_connections_mid_request(postmark):
    postmark.script("a@example.com", ["slow:0.5"])
    body = b'{"To": "a@example.com"}'
    with socket.create_connection((postmark.host, postmark.port), timeout=5) as sock:
        sock.sendall(b"POST /email HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"X-Postmark-Server-Token: {TOKEN}\r\n".encode()
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        assert postmark.wait_for(postmark.in_flight_ports, timeout=2) == \
            [sock.getsockname()[1]]
        assert sock.recv(100).startswith(b"HTTP/1.1 200 ")
        assert postmark.wait_for(lambda: not postmark.in_flight_ports(), timeout=2)
    assert postmark.accepted_for("a@example.com")
    assert requests.get(f"{postmark.url}_fake/stats", timeout=5).json()["in_flight_ports"] == []


def test_postmark_command_line_serves_faults_and_permanent_domains():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.postmark", "--port", str(port), "--token", TOKEN,
         "--faults", "503=1.0", "--seed", "1", "--permanent-domain", "invalid.example"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == f"listening http://127.0.0.1:{port}/"
        url = f"http://127.0.0.1:{port}/"
        with override_settings(ANYMAIL={"POSTMARK_SERVER_TOKEN": TOKEN,
                                        "POSTMARK_API_URL": url, "REQUESTS_TIMEOUT": 5}):
            with pytest.raises(AnymailRecipientsRefused):
                send_postmark(make_message("a@invalid.example"))
            with pytest.raises(AnymailRequestsAPIError) as info:
                send_postmark(make_message("a@example.com"))
            assert info.value.status_code == 503
        stats = requests.get(f"{url}_fake/stats", timeout=5).json()
        assert stats["modes"] == {"422": 1, "503": 1}
    finally:
        proc.terminate()
        proc.wait(10)
    bad = subprocess.run(
        [sys.executable, "-m", "tests.fakes.postmark", "--faults", "503=0.7,reset=0.4"],
        capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "more than 1" in bad.stderr


# -- FakeSMTP -------------------------------------------------------------------------


def test_smtp_250_received(smtp):
    msg = make_message("Someone <A@Example.com>", subject="Grüße", message_id="<s1@test.example>")
    assert send_smtp(smtp, msg) == 1

    [got] = smtp.received
    assert got.mail_from == "sender@example.com"
    assert got.rcpt_tos == ["A@Example.com"]
    assert got.message_id == "<s1@test.example>"
    assert got.subject == "Grüße"
    assert got.message["To"] == "Someone <A@Example.com>"
    assert got.message.get_content().strip() == "Body"
    assert smtp.received_for("a@example.com") == [got]
    assert smtp.count_by_message_id() == {"<s1@test.example>": 1}
    assert [(a.stage, a.mode) for a in smtp.attempts] == [("RCPT", "250"), ("DATA", "250")]


def test_smtp_generates_message_id(smtp):
    send_smtp(smtp, make_message("a@example.com", message_id=None))
    [got] = smtp.received
    assert got.message_id and got.message_id.startswith("<")


@pytest.mark.parametrize(
    ("mode", "text"),
    [
        ("550", b"5.1.1 <a@example.com>: Recipient address rejected: User unknown"),
        ("451", b"4.7.1 Greylisted, please try again later"),
        ("421", b"4.3.2 Service not available, closing transmission channel"),
    ],
)
def test_smtp_rcpt_refusals(smtp, mode, text):
    smtp.script("a@example.com", [mode])
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        send_smtp(smtp, make_message("a@example.com"))
    assert info.value.recipients == {"a@example.com": (int(mode), text)}
    assert smtp.received == [] and smtp.delivered == []


@pytest.mark.parametrize("code", [451, 554])
def test_smtp_data_stage_errors(smtp, code):
    smtp.script("a@example.com", [f"data:{code}"])
    with pytest.raises(smtplib.SMTPDataError) as info:
        send_smtp(smtp, make_message("a@example.com"))
    assert info.value.smtp_code == code
    assert isinstance(info.value.smtp_error, bytes)
    assert smtp.received == []


def test_smtp_partial_refusal_is_silent(smtp):
    smtp.script("b@example.com", ["550"])
    assert send_smtp(smtp, make_message(["a@example.com", "b@example.com"])) == 1
    [got] = smtp.received
    assert got.rcpt_tos == ["a@example.com"]
    assert smtp.received_for("b@example.com") == []


def test_smtp_hang_times_out_then_counts_as_delivered(smtp):
    smtp.script("a@example.com", ["hang:1.2"])
    started = time.monotonic()
    with pytest.raises(smtplib.SMTPServerDisconnected) as info:
        send_smtp(smtp, make_message("a@example.com", message_id="<h@test.example>"))
    assert time.monotonic() - started < 2

    exc = info.value
    assert str(exc) == "Connection unexpectedly closed: timed out"
    assert exc.__cause__ is None
    assert type(exc.__context__) is TimeoutError
    assert isinstance(exc.__context__, socket.timeout)
    assert smtp.wait_for(lambda: smtp.delivered, timeout=3)
    assert smtp.received == []
    assert smtp.count_delivered_by_message_id() == {"<h@test.example>": 1}
    assert smtp.count_by_message_id() == {}


def test_smtp_drop(smtp):
    smtp.script("a@example.com", ["drop"])
    with pytest.raises(smtplib.SMTPServerDisconnected) as info:
        send_smtp(smtp, make_message("a@example.com"))
    assert str(info.value) == "Connection unexpectedly closed"
    assert smtp.delivered == []


def test_smtp_scripts_global_mode_and_reset(smtp):
    smtp.script("a@example.com", ["451", "data:451", "250"])
    outcomes = []
    for _ in range(4):
        try:
            send_smtp(smtp, make_message("a@example.com"))
            outcomes.append(250)
        except smtplib.SMTPRecipientsRefused as exc:
            outcomes.append(("rcpt", exc.recipients["a@example.com"][0]))
        except smtplib.SMTPDataError as exc:
            outcomes.append(("data", exc.smtp_code))
    assert outcomes == [("rcpt", 451), ("data", 451), 250, 250]
    assert len(smtp.received_for("a@example.com")) == 2

    smtp.script("a@example.com", ["250"])
    smtp.set_global_mode("421")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send_smtp(smtp, make_message("a@example.com"))
    assert smtp.remaining("a@example.com") == ["250"]
    smtp.set_global_mode(None)

    smtp.reset()
    assert smtp.received == [] and smtp.attempts == [] and smtp.remaining("a@example.com") == []
    send_smtp(smtp, make_message("a@example.com"))
    assert len(smtp.received) == 1
    with pytest.raises(ValueError):
        smtp.script("a@example.com", ["200"])
