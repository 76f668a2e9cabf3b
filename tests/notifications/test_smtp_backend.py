"""The fast serializer (notifications.mime) and the pipelining SMTP backend, on real sockets.

Content is checked the way a recipient sees it: parse our bytes and Django's own `message()` with
the stdlib parser and compare decoded headers and parts. The backend runs against the fake SMTP
server (with and without PIPELINING advertised) and against Postfix's smtp-sink.
"""

from __future__ import annotations

import email.policy
import shutil
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from email.message import EmailMessage as ParsedMessage
from email.parser import BytesParser
from email.utils import formataddr
from pathlib import Path
from typing import Any

import pytest
from django.core.mail import (
    BadHeaderError,
    EmailMessage,
    EmailMultiAlternatives,
    get_connection,
)
from django.core.mail.message import sanitize_address

from notifications.backends.smtp import NotAttempted, SMTPBackend
from notifications.mime import envelope, message_bytes
from tests.fakes._common import free_port, wait_for
from tests.fakes.smtp import FakeSMTP

TEXT = "Hello Jane,\n\nYour order #1234 has shipped.\n" + "Line of plain text here.\n" * 30
HTML = "<html><body><p>Hello Jane,</p>" + "<p>Your order has shipped.</p>\n" * 50 + "</body></html>"
TRICKY = (
    ".\n.leading dot\n..two dots\nFrom the start of a line\n"
    "trailing spaces   \ntab\tinside\t\n" + "x" * 2000 + "\nemoji 🎉 and é\r\nCR only\rend"
)


def parse(raw: bytes) -> ParsedMessage:
    return BytesParser(policy=email.policy.default).parsebytes(raw)


def leaf_parts(message: ParsedMessage) -> list[tuple[str, str]]:
    return [(p.get_content_type(), p.get_content()) for p in message.walk() if not p.is_multipart()]


def make_email(to: str = "jane@example.com", *, n: int = 1, **kw: Any) -> EmailMultiAlternatives:
    email_ = EmailMultiAlternatives(
        subject=kw.pop("subject", f"Your order #{n} has shipped"),
        body=kw.pop("body", TEXT),
        from_email=kw.pop("from_email", "Shop <noreply@example.com>"),
        to=[to],
        headers=kw.pop("headers", {"Message-ID": f"<n{n}.test@example.com>",
                                   "X-Notification-Id": str(n)}),
        **kw,
    )
    email_.attach_alternative(HTML, "text/html")
    return email_


# --- serializer -----------------------------------------------------------------------------------

CASES = {
    "ascii": make_email(),
    "non_ascii_subject": make_email(subject="Votre commande a été expédiée 🎉"),
    "long_non_ascii_subject": make_email(subject="Überweisung bestätigt – " * 12),
    "long_ascii_subject": make_email(subject="A rather long subject line " * 8),
    "non_ascii_name": make_email(to="Jérôme Dupont <jerome@example.com>"),
    "formataddr_name": make_email(to=formataddr(("Zoë 🎉, Ltd", "zoe@example.com"))),
    "quoted_name": make_email(to='"Doe, Jane" <jane@example.com>'),
    "idna_domain": make_email(to="Jörg <joerg@bücher.example>"),
    "tricky_bodies": make_email(body=TRICKY),
    "cc_and_reply_to": make_email(cc=["cc@example.com"], reply_to=["Support <help@example.com>"]),
    "non_ascii_extra_header": make_email(headers={"X-Tag": "ünïcode ✓", "Message-ID": "<m@x>"}),
    "no_message_id": make_email(headers={}),
    "empty_text_body": make_email(body=""),
    "text_only": EmailMessage("Plain", TRICKY, "a@example.com", ["b@example.com"]),
    "text_only_ascii": EmailMessage("Plain", "hi\n", "a@example.com", ["b@example.com"]),
    "text_only_empty": EmailMessage("Plain", "", "a@example.com", ["b@example.com"]),
}
CASES["html_tricky"] = make_email()
CASES["html_tricky"].alternatives = []
CASES["html_tricky"].attach_alternative(TRICKY + "<b>=_boundary-ish =3D</b>", "text/html")


@pytest.mark.parametrize("name", CASES)
def test_it_serializes_what_django_would(name: str) -> None:
    email_ = CASES[name]
    raw = message_bytes(email_)
    assert raw is not None
    ours, django = parse(raw), parse(email_.message().as_bytes(linesep="\r\n"))
    for header in ("From", "To", "Cc", "Reply-To", "X-Notification-Id", "X-Tag"):
        assert str(ours.get(header)) == str(django.get(header)), header
    # Django's folding of a long encoded subject shifts a space to the front; ours is exact.
    assert ours["Subject"] == email_.subject
    assert django["Subject"].strip() == email_.subject.strip()
    if "message-id" in {h.lower() for h in email_.extra_headers}:
        assert ours["Message-ID"] == django["Message-ID"]
    else:
        assert ours["Message-ID"].endswith(">") and "@" in ours["Message-ID"]
    assert ours["Date"] is not None
    assert leaf_parts(ours) == leaf_parts(django)
    assert not ours.defects and all(not p.defects for p in ours.walk())


@pytest.mark.parametrize("name", CASES)
def test_it_writes_crlf_lines_of_legal_length(name: str) -> None:
    raw = message_bytes(CASES[name])
    assert raw is not None
    assert raw.count(b"\n") == raw.count(b"\r\n") and raw.count(b"\r") == raw.count(b"\r\n")
    assert raw.isascii()
    body = raw.split(b"\r\n\r\n", 1)[1]
    for line in body.split(b"\r\n"):
        # quoted-printable lines stay within 76; 7bit only carries short ASCII lines
        assert len(line) <= (76 if b"=" in line and b"x" * 80 not in line else 998)


@pytest.mark.parametrize(
    "kw",
    [
        {"subject": "Hi\r\nBcc: victim@example.com"},
        {"to": "Jane\n <jane@example.com>"},
        {"headers": {"X-Notification-Id": "1\nBcc: victim@example.com"}},
    ],
)
def test_it_refuses_header_injection_like_django(kw: dict[str, Any]) -> None:
    email_ = make_email(**kw)
    with pytest.raises(BadHeaderError):
        email_.message()
    with pytest.raises(BadHeaderError):
        message_bytes(email_)


def test_it_leaves_other_shapes_to_django() -> None:
    with_file = make_email()
    with_file.attach("a.txt", "hello", "text/plain")
    two_alternatives = make_email()
    two_alternatives.attach_alternative("{}", "application/json")
    pdf_only = EmailMultiAlternatives("s", "b", "a@example.com", ["b@example.com"])
    pdf_only.attach_alternative(b"%PDF", "application/pdf")
    latin1 = make_email()
    latin1.encoding = "iso-8859-1"
    html_main = EmailMessage("s", "<p>x</p>", "a@example.com", ["b@example.com"])
    html_main.content_subtype = "html"
    utf8_local_part = make_email(to="Jörg <jörg@example.com>")
    custom_type = make_email(headers={"Content-Type": "text/plain"})
    for email_ in (with_file, two_alternatives, pdf_only, latin1, html_main, utf8_local_part,
                   custom_type):
        assert message_bytes(email_) is None


@pytest.mark.parametrize(
    "address",
    [
        "jane@example.com",
        "Jane Doe <jane@example.com>",
        '"Doe, Jane" <jane.doe+tag@example.com>',
        "=?utf-8?b?SsOpcsO0bWU=?= <j@example.com>",
        "Jérôme <jerome@example.com>",
        "joerg@bücher.example",
        "<bare@example.com>",
    ],
)
def test_it_builds_the_envelope_django_and_smtplib_would(address: str) -> None:
    email_ = make_email(to=address, from_email=address)
    expected = smtplib.quoteaddr(sanitize_address(address, "utf-8"))[1:-1]
    assert envelope(email_) == (expected, [expected])


# --- backend against the fake SMTP server ---------------------------------------------------------

async def _ehlo_with_pipelining(server: Any, session: Any, envelope: Any, hostname: str,
                                responses: list[str]) -> list[str]:
    session.host_name = hostname
    return [*responses[:-1], "250-PIPELINING", responses[-1]]


@pytest.fixture(params=["pipelining", "serial"])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeSMTP]:
    """aiosmtpd does not advertise PIPELINING (but reads commands in order, so it copes with it);
    the "pipelining" variant advertises it through aiosmtpd's EHLO hook."""
    with FakeSMTP() as server:
        if request.param == "pipelining":
            server._controller.handler.handle_EHLO = _ehlo_with_pipelining  # type: ignore[union-attr]
        yield server


@pytest.fixture
def backend(fake: FakeSMTP) -> Iterator[SMTPBackend]:
    connection = SMTPBackend(host=fake.host, port=fake.port, timeout=2)
    yield connection
    connection.close()


def test_it_pipelines_only_when_the_server_says_so(
    fake: FakeSMTP, backend: SMTPBackend, request: pytest.FixtureRequest
) -> None:
    assert backend.send_each([make_email()]) == [None]
    assert backend.connection.has_extn("pipelining") == ("pipelining" in request.node.name)


def test_it_reports_refusals_at_their_index_and_delivers_the_rest_once(
    fake: FakeSMTP, backend: SMTPBackend
) -> None:
    fake.script("gone@example.com", "550")
    fake.script("grey@example.com", "451")
    addresses = ["a@example.com", "gone@example.com", "b@example.com", "grey@example.com",
                 "c@example.com"]

    results = backend.send_each([make_email(a, n=i) for i, a in enumerate(addresses)])

    assert [r is None for r in results] == [True, False, True, False, True]
    for index, code in ((1, 550), (3, 451)):
        assert isinstance(results[index], smtplib.SMTPRecipientsRefused)
        assert [c for c, _ in results[index].recipients.values()] == [code]
    for address in ("a@example.com", "b@example.com", "c@example.com"):
        assert len(fake.received_for(address)) == 1
    assert fake.received_for("gone@example.com") == fake.received_for("grey@example.com") == []
    assert backend.connection is not None  # refusals don't cost the connection


def test_it_delivers_when_only_some_recipients_are_refused(
    fake: FakeSMTP, backend: SMTPBackend
) -> None:
    fake.script("gone@example.com", "550")
    email_ = make_email()
    email_.cc = ["gone@example.com"]

    assert backend.send_each([email_, make_email("next@example.com")]) == [None, None]
    assert [m.rcpt_tos for m in fake.received] == [["jane@example.com"], ["next@example.com"]]


def test_it_reports_a_refused_end_of_data_as_smtp_data_error(
    fake: FakeSMTP, backend: SMTPBackend
) -> None:
    fake.script("spam@example.com", "data:554")

    results = backend.send_each([make_email("spam@example.com"), make_email("ok@example.com")])

    assert isinstance(results[0], smtplib.SMTPDataError) and results[0].smtp_code == 554
    assert results[1] is None
    assert [m.rcpt_tos for m in fake.received] == [["ok@example.com"]]


def test_it_blames_a_drop_on_the_message_in_flight_and_skips_the_rest(
    fake: FakeSMTP, backend: SMTPBackend
) -> None:
    fake.script("drop@example.com", "drop")
    addresses = ["a@example.com", "b@example.com", "drop@example.com", "c@example.com",
                 "d@example.com"]

    results = backend.send_each([make_email(a, n=i) for i, a in enumerate(addresses)])

    assert results[:2] == [None, None]
    assert isinstance(results[2], smtplib.SMTPServerDisconnected)
    assert all(isinstance(r, NotAttempted) for r in results[3:])
    assert backend.connection is None
    assert sorted(m.rcpt_tos[0] for m in fake.received) == ["a@example.com", "b@example.com"]
    # The next call opens a new connection; the skipped messages go through.
    assert backend.send_each([make_email(a) for a in addresses[3:]]) == [None, None]
    assert len(fake.received_for("c@example.com")) == len(fake.received_for("d@example.com")) == 1


def test_it_gives_a_timeout_to_the_message_in_flight(fake: FakeSMTP) -> None:
    fake.script("slow@example.com", "hang:2")
    backend = SMTPBackend(host=fake.host, port=fake.port, timeout=0.3)

    results = backend.send_each([make_email("slow@example.com"), make_email("next@example.com")])

    assert isinstance(results[0], smtplib.SMTPServerDisconnected)
    assert isinstance(results[0].__context__, TimeoutError)
    assert isinstance(results[1], NotAttempted)
    assert backend.connection is None


def test_it_stops_when_the_server_closes_with_421(fake: FakeSMTP, backend: SMTPBackend) -> None:
    fake.script("busy@example.com", "421")

    results = backend.send_each(
        [make_email("a@example.com"), make_email("busy@example.com"), make_email("c@example.com")]
    )

    assert results[0] is None
    assert isinstance(results[1], smtplib.SMTPRecipientsRefused)
    assert [c for c, _ in results[1].recipients.values()] == [421]
    assert isinstance(results[2], NotAttempted)
    assert backend.connection is None


def test_it_keeps_bad_messages_to_themselves(fake: FakeSMTP, backend: SMTPBackend) -> None:
    injected = make_email(subject="Hi\nBcc: victim@example.com")
    nobody = make_email()
    nobody.to = []

    results = backend.send_each([make_email("a@example.com"), injected, nobody,
                                 make_email("b@example.com")])

    assert results[0] is None and results[3] is None
    assert isinstance(results[1], BadHeaderError)
    assert isinstance(results[2], smtplib.SMTPRecipientsRefused)
    assert sorted(m.rcpt_tos[0] for m in fake.received) == ["a@example.com", "b@example.com"]


def test_it_delivers_content_intact_through_dot_stuffing(
    fake: FakeSMTP, backend: SMTPBackend
) -> None:
    email_ = CASES["html_tricky"]
    attachment = make_email("file@example.com", body=TRICKY)  # Django's serializer path
    attachment.attach("notes.txt", TRICKY, "text/plain")

    assert backend.send_each([email_, attachment]) == [None, None]

    by_rcpt = {m.rcpt_tos[0]: m.message for m in fake.received}
    assert leaf_parts(by_rcpt["jane@example.com"]) == leaf_parts(
        parse(email_.message().as_bytes(linesep="\r\n"))
    )
    got = leaf_parts(by_rcpt["file@example.com"])
    assert got == leaf_parts(parse(attachment.message().as_bytes(linesep="\r\n")))


def test_it_works_as_a_drop_in_django_backend(fake: FakeSMTP) -> None:
    connection = get_connection(
        "notifications.backends.smtp.SMTPBackend", host=fake.host, port=fake.port, timeout=2
    )
    assert isinstance(connection, SMTPBackend)

    assert connection.send_messages([make_email("a@example.com"), make_email("b@example.com")]) == 2

    fake.script("gone@example.com", "550")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        connection.send_messages([make_email("gone@example.com")])
    quiet = get_connection("notifications.backends.smtp.SMTPBackend", fail_silently=True,
                           host=fake.host, port=fake.port)
    fake.script("gone@example.com", "550")
    assert quiet.send_messages([make_email("gone@example.com")]) == 0
    assert [m.message["Message-ID"] for m in fake.received] == ["<n1.test@example.com>"] * 2


def test_it_reports_a_refused_connection_without_raising() -> None:
    backend = SMTPBackend(host="127.0.0.1", port=free_port(), timeout=1)

    results = backend.send_each([make_email(), make_email()])

    assert isinstance(results[0], ConnectionRefusedError)
    assert isinstance(results[1], NotAttempted)


# --- backend against Postfix's smtp-sink ----------------------------------------------------------

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


@pytest.fixture
def smtp_sink() -> str:
    """The smtp-sink binary (.ci/run installs Postfix; a dev machine may not have it)."""
    if not Path(SMTP_SINK).exists():
        pytest.skip("Postfix smtp-sink is not installed (apt-get install postfix)")
    return SMTP_SINK


@pytest.fixture
def sink(smtp_sink: str) -> Iterator[tuple[int, Path]]:
    """smtp-sink on a free port, dumping each transaction into its own file."""
    port = free_port()
    # smtp-sink writes as the unprivileged postfix user: pytest's tmp_path (under a 0700
    # directory) is out of its reach.
    with tempfile.TemporaryDirectory(prefix="smtp-sink-") as directory:
        dump = Path(directory)
        dump.chmod(0o777)
        process = subprocess.Popen(
            [smtp_sink, "-u", "postfix", "-d", f"{dump}/%H%M%S.", f"127.0.0.1:{port}", "100"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            assert wait_for(lambda: _listening(port), timeout=5)
            yield port, dump
        finally:
            process.terminate()
            process.wait(5)


def _listening(port: int) -> bool:
    try:
        smtplib.SMTP("127.0.0.1", port, timeout=1).close()
    except OSError:
        return False
    return True


def test_it_pipelines_a_batch_into_smtp_sink(sink: tuple[int, Path]) -> None:
    port, dump = sink
    backend = SMTPBackend(host="127.0.0.1", port=port, timeout=5)
    emails = [make_email(f"user{i}@example.com", n=i) for i in range(50)]
    emails[7] = make_email("user7@example.com", n=7, body=TRICKY)

    results = backend.send_each(emails)

    assert results == [None] * 50
    assert backend.connection.has_extn("pipelining")
    backend.close()
    assert wait_for(lambda: len(list(dump.iterdir())) == 50, timeout=5)
    got = {m["Message-ID"]: m for m in (parse(p.read_bytes()) for p in dump.iterdir())}
    assert sorted(got) == sorted(f"<n{i}.test@example.com>" for i in range(50))
    # smtp-sink dumps with LF line ends; what matters is the text after un-stuffing and decoding.
    text, html = (content for _, content in leaf_parts(got["<n7.test@example.com>"]))
    assert text == TRICKY.replace("\r\n", "\n").replace("\r", "\n")
    assert html == HTML


def test_it_survives_smtp_sink_refusing_rcpt(smtp_sink: str) -> None:
    """smtp-sink -r RCPT answers every RCPT with 4xx: each message is refused, and the
    connection stays usable (DATA is rejected, RSET clears the transaction)."""
    port = free_port()
    process = subprocess.Popen(
        [smtp_sink, "-u", "postfix", "-r", "RCPT", f"127.0.0.1:{port}", "100"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: _listening(port), timeout=5)
        backend = SMTPBackend(host="127.0.0.1", port=port, timeout=5)
        started = time.monotonic()
        results = backend.send_each([make_email(n=i) for i in range(5)])
        assert time.monotonic() - started < 4
        assert all(isinstance(r, smtplib.SMTPRecipientsRefused) for r in results)
        assert all(c // 100 == 4 for r in results for c, _ in r.recipients.values())
        assert backend.connection is not None
        backend.close()
    finally:
        process.terminate()
        process.wait(5)
