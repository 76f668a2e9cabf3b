"""A fake SMTP server (aiosmtpd ``Controller``) for end-to-end tests.

Runs on ``127.0.0.1`` on a free port in a background thread of the test process; point
workers at it with ``EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend``,
``EMAIL_HOST=<fake.host>``, ``EMAIL_PORT=<fake.port>``.

Behaviour is scripted per recipient (lower-cased addr-spec): each ``RCPT TO`` for that
address consumes the next mode; when exhausted ``fake.default_mode`` (``"250"``) applies;
``fake.set_global_mode(mode)`` overrides everything without consuming scripts.

Modes and what Django 5.2's SMTP backend (``smtplib.sendmail``) raises with them
(verified in ``tests/test_fakes.py``; all are ``smtplib.SMTPException`` subclasses unless
noted):

``"250"``
    Accept the recipient; the message is recorded when DATA completes (``received``).
``"421"``, ``"451"``, ``"550"``, any other 3-digit 4xx/5xx code
    Reply to ``RCPT TO`` with that code (550 is ``550 5.1.1 <addr>: Recipient address
    rejected: User unknown``; 451 is a greylisting-style ``451 4.7.1``). If *every*
    recipient is refused: ``smtplib.SMTPRecipientsRefused`` with
    ``exc.recipients == {addr: (code, b"text")}`` - the same class for 4xx and 5xx, so
    classify by the code(s) in ``exc.recipients``. ``421`` makes smtplib close the
    connection immediately and raise ``SMTPRecipientsRefused`` too. If only *some*
    recipients are refused, nothing is raised (Django ignores sendmail's return value)
    and the message is delivered to the others.
``"data:<code>"`` (e.g. ``"data:451"``, ``"data:554"``)
    Accept the RCPT but answer the end of DATA with ``<code>``:
    ``smtplib.SMTPDataError`` with ``exc.smtp_code == code``, ``exc.smtp_error`` bytes.
``"hang:<seconds>"``
    Accept the RCPT; after the DATA is received sleep, then answer 250. With a client
    timeout shorter than the hang: ``smtplib.SMTPServerDisconnected("Connection
    unexpectedly closed: timed out")`` whose ``__context__`` is ``TimeoutError`` (==
    ``socket.timeout``); ``__cause__`` is ``None``. The message counts as *delivered*
    once the hang is over (the server got all the data, even if the client hung up),
    but never as *received*.
``"drop"``
    Accept the RCPT; after the DATA is received abort the TCP connection without a reply:
    ``smtplib.SMTPServerDisconnected("Connection unexpectedly closed")``. Not recorded
    as received/delivered.

When one envelope has several recipients with DATA-stage modes, the first recipient's
DATA-stage mode wins.
"""

from __future__ import annotations

import asyncio
import email.policy
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller

from ._common import ModeScripts, Scripted, addr_spec, free_port, parse_seconds, wait_for

__all__ = ["FakeSMTP", "SMTPMessage", "SMTPAttempt"]

_REPLY_TEXT = {
    421: "421 4.3.2 Service not available, closing transmission channel",
    450: "450 4.2.1 Mailbox temporarily unavailable",
    451: "451 4.7.1 Greylisted, please try again later",
    452: "452 4.3.1 Insufficient system storage",
    550: "550 5.1.1 <{addr}>: Recipient address rejected: User unknown",
    552: "552 5.3.4 Message size exceeds fixed limit",
    553: "553 5.1.3 Invalid recipient address",
    554: "554 5.7.1 Message rejected",
}


def _reply(code: int, addr: str = "") -> str:
    text = _REPLY_TEXT.get(code)
    if text is None:
        text = f"{code} {str(code)[0]}.0.0 Scripted failure"
    return text.format(addr=addr)


def validate_mode(mode: str) -> str:
    mode = str(mode).strip()
    if mode in ("250", "drop"):
        return mode
    if mode.startswith("hang:"):
        parse_seconds(mode, "hang")
        return mode
    code = mode.removeprefix("data:")
    if len(code) == 3 and code.isdigit() and 400 <= int(code) < 600:
        return mode
    raise ValueError(
        f"unknown FakeSMTP mode {mode!r}; use 250, 421, 451, 550, <4xx/5xx>, "
        "data:<4xx/5xx>, hang:<s>, drop"
    )


@dataclass
class SMTPAttempt:
    """One scripted decision: a RCPT reply or the end-of-DATA reply."""

    stage: str  # "RCPT" or "DATA"
    recipient: str  # addr-spec (for DATA: the recipient whose mode was applied, or "")
    mode: str
    reply: str | None  # reply sent (None for drop / hang interrupted by stop())
    time: float


@dataclass
class SMTPMessage:
    """A message whose DATA completed with a 250 reply."""

    mail_from: str
    rcpt_tos: list[str]  # as given in RCPT TO (only the accepted ones)
    message: EmailMessage  # parsed with email.policy.default
    raw: bytes
    mode: str  # "250" or "hang:<s>"
    time: float

    @property
    def message_id(self) -> str | None:
        value = self.message.get("Message-ID")
        return None if value is None else str(value).strip()

    @property
    def subject(self) -> str | None:
        value = self.message.get("Subject")
        return None if value is None else str(value)

    @property
    def received(self) -> bool:
        return self.mode == "250"

    def is_for(self, address: str) -> bool:
        key = addr_spec(address)
        return any(addr_spec(r) == key for r in self.rcpt_tos)


class _Handler:
    def __init__(self, fake: FakeSMTP):
        self.fake = fake

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        fake = self.fake
        mode = fake._scripts.next_mode(address)
        if mode.isdigit():
            reply = "250 OK" if mode == "250" else _reply(int(mode), address)
        else:  # data-stage modes accept the recipient now
            reply = "250 OK"
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            if not hasattr(envelope, "fake_modes"):
                envelope.fake_modes = []
            envelope.fake_modes.append((addr_spec(address), mode))
        fake._attempt("RCPT", addr_spec(address), mode, reply)
        return reply

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        fake = self.fake
        modes = getattr(envelope, "fake_modes", [])
        recipient, mode = next(((r, m) for r, m in modes if m != "250"), ("", "250"))
        raw = envelope.original_content or b""
        if mode.startswith("data:"):
            reply = _reply(int(mode.removeprefix("data:")))
            fake._attempt("DATA", recipient, mode, reply)
            return reply
        if mode == "drop":
            fake._attempt("DATA", recipient, mode, None)
            server.transport.abort()
            return "250 OK"  # never reaches the client: the transport is gone
        reply = "250 2.0.0 Ok: queued"
        record = SMTPMessage(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            message=BytesParser(policy=email.policy.default).parsebytes(raw),
            raw=raw,
            mode=mode,
            time=time.time(),
        )
        if mode.startswith("hang:"):
            seconds = parse_seconds(mode, "hang")
            deadline = time.monotonic() + seconds
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                # aiosmtpd cancels the handler when the client gives up (timeout ->
                # disconnect). Like a real MTA that already has the data, still count the
                # message as delivered once the hang is over, unless the fake is stopped.
                fake._attempt("DATA", recipient, mode, None)
                if not fake._stopping.is_set():
                    asyncio.get_running_loop().call_later(
                        max(0.0, deadline - time.monotonic()), fake._store_unless_stopped, record
                    )
                raise
        fake._attempt("DATA", recipient, mode, reply)
        fake._store(record)
        return reply


class FakeSMTP(Scripted):
    """Fake SMTP server. See the module docstring for modes and Django's exceptions.

    Public API: ``start()``, ``stop()``, context manager, ``host``, ``port``,
    ``default_mode`` (settable), ``script(addr, modes)``, ``remaining(addr)``,
    ``set_global_mode(mode | None)``, ``reset()``, ``received`` (250 in normal mode),
    ``delivered`` (received + completed hangs), ``attempts`` (every RCPT/DATA decision),
    ``received_for(addr)``, ``delivered_for(addr)``, ``count_by_message_id()``,
    ``count_delivered_by_message_id()``, ``wait_for(predicate, timeout)``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self._requested_port = port
        self._scripts = ModeScripts("250", validate_mode)
        self._lock = threading.Lock()
        self._messages: list[SMTPMessage] = []
        self._attempts: list[SMTPAttempt] = []
        self._controller: Controller | None = None
        self._stopping = threading.Event()

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> FakeSMTP:
        if self._controller is not None:
            return self
        self._stopping.clear()
        quiet = logging.getLogger("mail.log")  # aiosmtpd logs every command at INFO
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)
        last_error: Exception | None = None
        for _ in range(5):  # the free port can be taken between probing and binding
            port = self._requested_port or free_port(self.host)
            controller = Controller(
                _Handler(self), hostname=self.host, port=port, ready_timeout=5.0
            )
            try:
                controller.start()
            except Exception as exc:  # retry with another port
                last_error = exc
                if self._requested_port:
                    break
                continue
            self._controller, self.port = controller, port
            return self
        raise RuntimeError(f"FakeSMTP could not start: {last_error!r}") from last_error

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            self._stopping.set()
            controller.stop()

    def __enter__(self) -> FakeSMTP:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- scripting (shared API: see _common.Scripted) --------------------------------

    def _clear_records(self) -> None:
        with self._lock:
            self._messages.clear()
            self._attempts.clear()

    # -- records --------------------------------------------------------------------

    @property
    def delivered(self) -> list[SMTPMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def received(self) -> list[SMTPMessage]:
        return [m for m in self.delivered if m.received]

    @property
    def attempts(self) -> list[SMTPAttempt]:
        with self._lock:
            return list(self._attempts)

    def attempts_for(self, address: str) -> list[SMTPAttempt]:
        key = addr_spec(address)
        return [a for a in self.attempts if a.recipient == key]

    def received_for(self, address: str) -> list[SMTPMessage]:
        return [m for m in self.received if m.is_for(address)]

    def delivered_for(self, address: str) -> list[SMTPMessage]:
        return [m for m in self.delivered if m.is_for(address)]

    def count_by_message_id(self) -> Counter[str]:
        """Counter of received messages keyed by Message-ID header (None skipped)."""
        return Counter(m.message_id for m in self.received if m.message_id is not None)

    def count_delivered_by_message_id(self) -> Counter[str]:
        return Counter(m.message_id for m in self.delivered if m.message_id is not None)

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02
    ) -> Any:
        """Poll ``predicate()``; return its last value (falsy if ``timeout`` ran out)."""
        return wait_for(predicate, timeout, interval)

    # -- internals ------------------------------------------------------------------

    def _attempt(self, stage: str, recipient: str, mode: str, reply: str | None) -> None:
        with self._lock:
            self._attempts.append(SMTPAttempt(stage, recipient, mode, reply, time.time()))

    def _store_unless_stopped(self, message: SMTPMessage) -> None:
        if not self._stopping.is_set():
            self._store(message)

    def _store(self, message: SMTPMessage) -> None:
        with self._lock:
            self._messages.append(message)
