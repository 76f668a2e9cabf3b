"""A fake Postmark HTTP API for end-to-end tests.

The fake runs a ``ThreadingHTTPServer`` on ``127.0.0.1`` (ephemeral port) in a daemon
thread of the test process. Point worker processes at it with::

    ANYMAIL_POSTMARK_API_URL=<fake.url>          # "http://127.0.0.1:<port>/"
    ANYMAIL_POSTMARK_SERVER_TOKEN=<fake.server_token>

Endpoints (what django-anymail 15.2's Postmark backend calls,
see ``anymail/backends/postmark.py`` ``PostmarkPayload.get_api_endpoint``):

* ``POST /email``                 - one message (plain send; all "To" in one message)
* ``POST /email/batch``           - JSON *list* of messages; anymail uses it when the
  message has ``merge_metadata`` / ``merge_headers`` (``is_batch()``), one entry per "To"
* ``POST /email/withTemplate/``   - like ``/email`` (templates are not rendered)
* ``POST /email/batchWithTemplates`` - ``{"Messages": [...]}``
(``/email/bulk`` is only used with ``POSTMARK_USE_BULK_API`` and is not supported.)

Every request must carry ``X-Postmark-Server-Token: <server_token>``; otherwise the
answer is HTTP 401 ``{"ErrorCode": 10, ...}`` (no script is consumed, mode recorded as
``"bad-token"``).

Behaviour is scripted per recipient (the first "To" addr-spec of each message,
lower-cased; falls back to the first Cc/Bcc)::

    fake.script("a@example.com", ["503", "429:2", "200"])

Each message for that recipient consumes the next mode; when the script is exhausted
``fake.default_mode`` (initially ``"200"``) applies. ``fake.set_global_mode(mode)``
overrides everything (scripts are not consumed while it is set; ``None`` clears it).

Faults for load and chaos runs, applied to messages no global mode or script decides, in this
order:

* ``fake.permanent_domains`` (a set of lower-case domains): a recipient in one of them is always
  answered ``"422"`` (an address that can never be delivered).
* ``fake.set_faults({"503": 0.20, "429:1": 0.05, "hang:2": 0.05, "reset": 0.02,
  "slow:0.8": 0.10}, seed=1)``: each message draws its mode from that mix (the rest of the
  probability is ``default_mode``). The draw for the n-th such message to one recipient comes
  from ``Random(f"{seed}:{recipient}:{n}")``, so the same seed gives each message the same
  faults on the same tries whatever order concurrent requests arrive in. ``set_faults(None)``
  clears the mix.

Modes and what anymail 15.2 does with them (verified in ``tests/test_fakes.py``):

``"200"``
    HTTP 200 ``{"To", "SubmittedAt", "MessageID": <uuid>, "ErrorCode": 0, "Message": "OK"}``.
    anymail: ``message.anymail_status.status == {"sent"}``, ``.message_id`` == MessageID.
``"422"``
    HTTP 422 ``{"ErrorCode": 300, "Message": "Invalid 'To' address: '<addr>'."}`` - the
    permanent "invalid recipient" rejection. anymail does NOT raise in ``raise_for_status``
    for 422; it parses the body, marks that recipient ``"invalid"`` and, if *all*
    recipients are invalid/rejected, raises ``anymail.exceptions.AnymailRecipientsRefused``
    (subclass of ``AnymailError``, *not* of ``AnymailAPIError``/``requests.HTTPError``;
    ``exc.status_code is None``, ``exc.response.status_code == 422``,
    ``exc.email_message.anymail_status.recipients[addr].status == "invalid"``).
    If the message has other "To" recipients, they get status ``"unknown"`` and nothing
    is raised (Postmark itself rejects the whole message). With
    ``ANYMAIL["IGNORE_RECIPIENT_STATUS"] = True`` nothing is raised either.
    In ``/email/batch`` Postmark answers HTTP 200 with a per-message ErrorCode 300 entry
    instead; the fake does the same.
``"406"``
    HTTP 422 ``{"ErrorCode": 406, "Message": "...Found inactive addresses: <addr>.
    Inactive recipients..."}`` (suppressed recipient). anymail: status ``"rejected"`` ->
    ``AnymailRecipientsRefused`` as for ``"422"``.
``"401"``
    HTTP 401 ``{"ErrorCode": 10, ...}`` -> ``AnymailRequestsAPIError``, ``status_code`` 401.
``"429"`` / ``"429:<seconds>"``
    HTTP 429 ``{"ErrorCode": 429, ...}`` with ``Retry-After: <seconds>`` (header omitted
    for bare ``"429"``) -> ``AnymailRequestsAPIError`` with ``status_code == 429`` and
    ``exc.response.headers["Retry-After"] == "<seconds>"`` (a string).
``"500"``, ``"503"``, any other 3-digit code >= 400
    HTTP <code> with a JSON ``{"Message": ...}`` body -> ``AnymailRequestsAPIError``
    (subclass of ``AnymailAPIError`` and ``requests.HTTPError``), ``status_code`` = code,
    ``exc.response`` is the ``requests.Response``.
``"hang:<seconds>"``
    Read the whole request, sleep, then try to answer 200 (record ``write_ok``). The
    message counts as *delivered* (Postmark processed it) but not as *accepted* (the
    client normally timed out first). With a client timeout shorter than the hang anymail
    raises a dynamic class named ``AnymailRequestsAPIError`` that subclasses both
    ``anymail.exceptions.AnymailRequestsAPIError`` and ``requests.exceptions.ReadTimeout``;
    ``exc.__cause__`` is the ``requests.exceptions.ReadTimeout``; ``exc.response`` and
    ``exc.status_code`` are ``None``.
``"slow:<seconds>"``
    Answer 200 as ``"200"`` does, after that extra delay (on top of ``latency``). Counted as
    *accepted* either way: a client whose timeout is shorter gives up although the provider took
    the message (accepted-then-timeout, like a ``hang`` that finishes).
``"reset"``
    Read the whole request, then close the socket with ``SO_LINGER`` 0 (TCP RST, no
    response). anymail raises the dynamic ``AnymailRequestsAPIError`` subclassing
    ``requests.exceptions.ConnectionError``; ``exc.__cause__`` is the
    ``requests.exceptions.ConnectionError`` (whose ``args[0]`` is urllib3's
    ``ProtocolError('Connection aborted.', ConnectionResetError(104, ...))``);
    ``exc.response``/``exc.status_code`` are ``None``.

``fake.latency`` (seconds, default 0) is added before every answer, as a real API's round trip
(50-500 ms) would be; keep-alive connections stay open meanwhile. ``GET /_fake/stats`` answers
``{"requests", "accepted", "delivered", "max_accepted_per_message_id", "max_in_flight",
"in_flight_ports", "modes"}`` for a fake running in
another process (``python -m tests.fakes.postmark --port N --latency 0.1``), and
``GET /_fake/log?since=<seq>`` one entry per message received (seq, time, recipient, mode,
message_id, notification_id, status, accepted, delivered). ``POST /_fake/mode`` with
``{"mode": "503"}`` sets the global mode (an outage) and ``{"mode": null}`` clears it. The command
line takes the faults too: ``--faults "503=0.2,429:1=0.05,hang:2=0.05,reset=0.02,slow:0.8=0.1"
--seed 1 --permanent-domain invalid.example``.

Records (thread-safe snapshots): ``fake.requests`` (one :class:`PostmarkRequest` per
message, so a batch call gives several), ``fake.accepted`` (answered 200 in mode "200" or
"slow:<s>"), ``fake.delivered`` (accepted + completed hangs: what Postmark would actually send).
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._common import ModeScripts, Scripted, addr_spec, parse_seconds, wait_for

__all__ = ["FakePostmark", "FaultMix", "PostmarkRequest", "parse_faults"]

SINGLE_ENDPOINTS = {"/email", "/email/withtemplate"}
BATCH_ENDPOINTS = {"/email/batch", "/email/batchwithtemplates"}
# modes answered per message (in a batch they become per-message entries of a 200 answer)
MESSAGE_LEVEL_MODES = {"200", "422", "406"}

_ERROR_TEXT = {
    401: {"ErrorCode": 10, "Message": "Request does not contain a valid Server token."},
    429: {"ErrorCode": 429, "Message": "Rate limit exceeded, please slow down."},
    500: {"Message": "Internal Server Error"},
    503: {"Message": "Service Unavailable: Postmark API is offline for maintenance."},
}


def validate_mode(mode: str) -> str:
    mode = str(mode).strip()
    if mode == "reset" or mode in MESSAGE_LEVEL_MODES or mode == "429":
        return mode
    if mode.startswith(("hang:", "slow:")):
        parse_seconds(mode, mode.partition(":")[0])
        return mode
    if mode.startswith("429:"):
        parse_seconds(mode, "429")
        return mode
    if len(mode) == 3 and mode.isdigit() and int(mode) >= 400:
        return mode
    raise ValueError(
        f"unknown FakePostmark mode {mode!r}; use 200, 422, 406, 401, 500, 503, <code>, "
        "429, 429:<s>, hang:<s>, slow:<s>, reset"
    )


def parse_faults(text: str) -> dict[str, float]:
    """``"503=0.2,429:1=0.05,reset=0.02"`` -> ``{"503": 0.2, "429:1": 0.05, "reset": 0.02}``."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        mode, sep, share = part.rpartition("=")
        if not sep:
            raise ValueError(f"fault {part!r} must look like <mode>=<probability>")
        mix[mode.strip()] = float(share)
    return mix


class FaultMix:
    """A seeded random mix of modes; see the module docstring."""

    def __init__(self, mix: Mapping[str, float], seed: int = 0) -> None:
        self.mix = {validate_mode(mode): float(share) for mode, share in mix.items()}
        if any(not 0 <= share <= 1 for share in self.mix.values()):
            raise ValueError(f"fault probabilities must be within [0, 1]: {dict(mix)}")
        if sum(self.mix.values()) > 1 + 1e-9:
            raise ValueError(f"fault probabilities add up to more than 1: {dict(mix)}")
        self.seed = seed
        self._drawn: Counter[str] = Counter()  # messages drawn for, per recipient
        self._lock = threading.Lock()

    def draw(self, recipient: str) -> str | None:
        """The mode of the next message to `recipient`, None for the default mode."""
        with self._lock:
            n = self._drawn[recipient]
            self._drawn[recipient] += 1
        x = random.Random(f"{self.seed}:{recipient}:{n}").random()
        for mode, share in self.mix.items():
            if x < share:
                return mode
            x -= share
        return None


@dataclass
class PostmarkRequest:
    """One message received by the fake (a batch request yields several)."""

    seq: int
    path: str
    recipient: str  # lower-cased addr-spec the script was looked up by
    mode: str  # mode applied to this message ("bad-token" when the token was wrong)
    data: dict[str, Any]  # this message's Postmark JSON
    http_headers: dict[str, str]  # request HTTP headers
    headers: dict[str, str]  # message headers from the JSON "Headers" list
    message_id: str | None  # value of the "Message-ID" message header, if any
    time: float  # time.time() when the request body was read
    status: int | None = None  # HTTP status answered (None: reset / not answered yet)
    error_code: int | None = None  # Postmark ErrorCode for this message
    postmark_message_id: str | None = None  # "MessageID" we answered with (200 / hang)
    write_ok: bool | None = None  # whether writing the answer raised no error
    to: list[str] = field(default_factory=list)  # all "To" addr-specs

    @property
    def subject(self) -> str | None:
        return self.data.get("Subject")

    @property
    def accepted(self) -> bool:
        """Answered 200/ErrorCode 0 in normal (or slow) mode: the provider took it and said so,
        whether or not the client waited for the answer."""
        return ((self.mode == "200" or self.mode.startswith("slow:"))
                and self.status == 200 and self.error_code == 0)

    @property
    def delivered(self) -> bool:
        """Postmark would have sent it (accepted, or a hang that finished its sleep)."""
        return self.accepted or (
            self.mode.startswith("hang:") and self.status == 200 and self.error_code == 0
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # a burst of new keep-alive connections must not be refused
    fake: FakePostmark


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are dropped after this
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without TCP_NODELAY Nagle holds the body
        # until the client's delayed ACK (~40 ms), capping a keep-alive client at ~25 sends/s.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.fake._track(self.connection, add=False)

    def do_POST(self) -> None:  # noqa: N802
        fake = self.server.fake
        if self.path.split("?", 1)[0].rstrip("/") == "/_fake/mode":
            fake._control_mode(self)
            return
        port = self.client_address[1]
        fake._count_in_flight(+1, port)
        try:
            fake._handle(self)
        finally:
            fake._count_in_flight(-1, port)

    def do_GET(self) -> None:  # noqa: N802
        fake = self.server.fake
        path, _, query = self.path.partition("?")
        if path.rstrip("/") == "/_fake/stats":
            fake._send_json(self, 200, fake.stats())
            return
        if path.rstrip("/") == "/_fake/log":
            since = dict(p.partition("=")[::2] for p in query.split("&") if p).get("since", "0")
            fake._send_json(self, 200, fake.log(since=int(since) if since.isdigit() else 0))
            return
        fake._send_json(self, 404, {"ErrorCode": 404, "Message": "Not found"})


class FakePostmark(Scripted):
    """Fake Postmark API server. See the module docstring for modes and anymail behaviour.

    Public API: ``start()``, ``stop()``, context manager, ``url``, ``host``, ``port``,
    ``server_token``, ``default_mode`` (settable), ``script(addr, modes)``,
    ``remaining(addr)``, ``set_global_mode(mode | None)``, ``reset()``, ``requests``,
    ``accepted``, ``delivered``, ``requests_for(addr)``, ``accepted_for(addr)``,
    ``delivered_for(addr)``, ``count_accepted_by_message_id()``,
    ``count_delivered_by_message_id()``, ``wait_for(predicate, timeout)``,
    ``permanent_domains`` (a set), ``set_faults(mix | None, seed)``, ``faults``.
    """

    def __init__(self, server_token: str = "test-server-token", host: str = "127.0.0.1"):
        self.server_token = server_token
        self.host = host
        self.port: int | None = None
        self.latency = 0.0  # seconds added before every answer
        self.in_flight = 0  # requests being handled now
        self.max_in_flight = 0  # the most handled at once since start (or reset)
        self._ports_in_flight: Counter[int] = Counter()
        self.connections_opened = 0  # TCP connections accepted since start (or reset)
        self.permanent_domains: set[str] = set()  # recipients there are always answered 422
        self._faults: FaultMix | None = None
        self._scripts = ModeScripts("200", validate_mode)
        self._lock = threading.Lock()
        self._records: list[PostmarkRequest] = []
        self._seq = 0
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> FakePostmark:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self.host, 0), _Handler)
        server.fake = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakePostmark:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes up hanging handlers
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # unblock handlers waiting on idle keep-alive connections
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakePostmark:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakePostmark is not started")
        return f"http://{self.host}:{self.port}/"

    # -- scripting (shared API: see _common.Scripted) --------------------------------

    def set_faults(self, mix: Mapping[str, float] | None, seed: int = 0) -> None:
        """A seeded random mix of modes for messages nothing else decides (None clears it)."""
        self._faults = FaultMix(mix, seed) if mix else None

    @property
    def faults(self) -> dict[str, float]:
        return dict(self._faults.mix) if self._faults is not None else {}

    def reset(self) -> None:
        """Forget scripts, global and default mode, faults, permanent domains and records."""
        self._faults = None
        self.permanent_domains = set()
        super().reset()

    def _next_mode(self, recipient: str) -> str:
        """Global mode, then the recipient's script, then a permanent domain, then the fault
        mix, then the default mode."""
        mode = self._scripts.next_scripted(recipient)
        if mode is not None:
            return mode
        if recipient.rpartition("@")[2] in {d.lower() for d in self.permanent_domains}:
            return "422"
        faults = self._faults
        drawn = faults.draw(recipient) if faults is not None else None
        return drawn if drawn is not None else self._scripts.default_mode

    def _clear_records(self) -> None:
        with self._lock:
            self._records.clear()
            self.max_in_flight = self.in_flight
            self.connections_opened = 0

    # -- records --------------------------------------------------------------------

    @property
    def requests(self) -> list[PostmarkRequest]:
        with self._lock:
            return list(self._records)

    @property
    def accepted(self) -> list[PostmarkRequest]:
        return [r for r in self.requests if r.accepted]

    @property
    def delivered(self) -> list[PostmarkRequest]:
        return [r for r in self.requests if r.delivered]

    def requests_for(self, address: str) -> list[PostmarkRequest]:
        key = addr_spec(address)
        return [r for r in self.requests if r.recipient == key or key in r.to]

    def accepted_for(self, address: str) -> list[PostmarkRequest]:
        return [r for r in self.requests_for(address) if r.accepted]

    def delivered_for(self, address: str) -> list[PostmarkRequest]:
        return [r for r in self.requests_for(address) if r.delivered]

    def count_accepted_by_message_id(self) -> Counter[str]:
        """Counter of accepted messages keyed by their Message-ID header (None skipped)."""
        return Counter(r.message_id for r in self.accepted if r.message_id is not None)

    def count_delivered_by_message_id(self) -> Counter[str]:
        return Counter(r.message_id for r in self.delivered if r.message_id is not None)

    def stats(self) -> dict[str, int]:
        requests = self.requests
        accepted = Counter(r.message_id for r in requests if r.accepted)
        return {"requests": len(requests), "accepted": sum(accepted.values()),
                "delivered": sum(1 for r in requests if r.delivered),
                "max_accepted_per_message_id": max(accepted.values(), default=0),
                "max_in_flight": self.max_in_flight,
                "in_flight_ports": self.in_flight_ports(),
                "modes": dict(Counter(r.mode for r in requests))}

    def log(self, since: int = 0) -> list[dict[str, Any]]:
        """One entry per message received after `since` (a seq), for a fake in another process:
        when it arrived, which message it was, what was answered."""
        return [{"seq": r.seq, "time": r.time, "recipient": r.recipient, "mode": r.mode,
                 "message_id": r.message_id,
                 "notification_id": r.headers.get("X-Notification-Id"), "status": r.status,
                 "accepted": r.accepted, "delivered": r.delivered}
                for r in self.requests if r.seq > since]

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02
    ) -> Any:
        """Poll ``predicate()``; return its last value (falsy if ``timeout`` ran out)."""
        return wait_for(predicate, timeout, interval)

    # -- request handling -----------------------------------------------------------

    def _control_mode(self, handler: _Handler) -> None:
        """POST /_fake/mode {"mode": "503" | null}: an outage for a fake in another process."""
        length = int(handler.headers.get("Content-Length") or 0)
        try:
            body = json.loads(handler.rfile.read(length) or b"null")
            mode = body["mode"]
            self.set_global_mode(None if mode is None else str(mode))
        except (ValueError, TypeError, KeyError) as exc:
            self._send_json(handler, 400, {"ErrorCode": 400, "Message": f"bad mode: {exc}"})
            return
        self._send_json(handler, 200, {"mode": self._scripts.global_mode})

    def _count_in_flight(self, delta: int, port: int) -> None:
        with self._lock:
            self.in_flight += delta
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._ports_in_flight[port] += delta
            if not self._ports_in_flight[port]:
                del self._ports_in_flight[port]

    def in_flight_ports(self) -> list[int]:
        """The client ports of the connections whose request is being handled now: which
        process is mid-send (a port is one of its sockets), for a test that kills one."""
        with self._lock:
            return sorted(self._ports_in_flight)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
                self.connections_opened += 1
            else:
                self._conns.discard(conn)

    def _record(self, **kwargs: Any) -> PostmarkRequest:
        with self._lock:
            self._seq += 1
            rec = PostmarkRequest(seq=self._seq, **kwargs)
            self._records.append(rec)
            return rec

    def _update(self, recs: list[PostmarkRequest], **kwargs: Any) -> None:
        with self._lock:
            for rec in recs:
                for key, value in kwargs.items():
                    setattr(rec, key, value)

    @staticmethod
    def _send_json(
        handler: _Handler,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> bool:
        payload = json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
            return True
        except OSError:
            handler.close_connection = True
            return False

    @staticmethod
    def _message_recipients(msg: dict[str, Any]) -> tuple[str, list[str]]:
        to = [addr_spec(a) for a in _split(msg.get("To"))]
        others = [addr_spec(a) for a in _split(msg.get("Cc")) + _split(msg.get("Bcc"))]
        first = (to or others or [""])[0]
        return first, to

    def _handle(self, handler: _Handler) -> None:
        received_at = time.time()
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        path = handler.path.split("?", 1)[0].rstrip("/").lower()
        http_headers = {k: v for k, v in handler.headers.items()}

        if path not in SINGLE_ENDPOINTS | BATCH_ENDPOINTS:
            self._send_json(handler, 404, {"ErrorCode": 404, "Message": f"No route {path}"})
            return
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            self._send_json(handler, 422, {"ErrorCode": 402, "Message": "Invalid JSON"})
            return
        if path in SINGLE_ENDPOINTS:
            messages = [body] if isinstance(body, dict) else []
        elif isinstance(body, dict):
            messages = body.get("Messages") or []
        else:
            messages = body if isinstance(body, list) else []
        if not messages or not all(isinstance(m, dict) for m in messages):
            self._send_json(handler, 422, {"ErrorCode": 402, "Message": "Invalid JSON"})
            return

        if self.latency:
            self._stopping.wait(self.latency)
        token_ok = handler.headers.get("X-Postmark-Server-Token") == self.server_token
        recs: list[PostmarkRequest] = []
        for msg in messages:
            recipient, to = self._message_recipients(msg)
            mode = self._next_mode(recipient) if token_ok else "bad-token"
            msg_headers = {
                str(h.get("Name")): str(h.get("Value"))
                for h in msg.get("Headers") or []
                if isinstance(h, dict)
            }
            message_id = next(
                (v for k, v in msg_headers.items() if k.lower() == "message-id"), None
            )
            recs.append(
                self._record(
                    path=path,
                    recipient=recipient,
                    mode=mode,
                    data=msg,
                    http_headers=http_headers,
                    headers=msg_headers,
                    message_id=message_id,
                    time=received_at,
                    to=to,
                )
            )

        # Records are completed *before* the answer is written, so a client that has seen
        # the answer always finds the matching record; only write_ok is filled in after.
        if not token_ok:
            self._update(recs, status=401, error_code=10)
            ok = self._send_json(handler, 401, _ERROR_TEXT[401])
            self._update(recs, write_ok=ok)
            return

        # the first request-level mode (anything but 200/422/406) decides the HTTP answer
        request_mode = next((r.mode for r in recs if r.mode not in MESSAGE_LEVEL_MODES), None)
        if request_mode is None:
            self._answer_messages(handler, path, recs, status_override=None)
        elif request_mode == "reset":
            self._update(recs, status=None, write_ok=False)
            self._reset_connection(handler)
        elif request_mode.startswith("hang:"):
            self._stopping.wait(parse_seconds(request_mode, "hang"))
            if self._stopping.is_set():
                self._update(recs, write_ok=False)
                handler.close_connection = True
                return
            handler.close_connection = True
            self._answer_messages(handler, path, recs, status_override=200)
        elif request_mode.startswith("slow:"):
            self._stopping.wait(parse_seconds(request_mode, "slow"))
            if self._stopping.is_set():
                self._update(recs, write_ok=False)
                handler.close_connection = True
                return
            self._answer_messages(handler, path, recs, status_override=200)
        else:
            if request_mode.startswith("429"):
                code = 429
                retry = request_mode.partition(":")[2]
                extra = {"Retry-After": retry} if retry else {}
            else:
                code, extra = int(request_mode), {}
            body = _ERROR_TEXT.get(code, {"Message": f"Scripted HTTP {code}"})
            self._update(recs, status=code, error_code=body.get("ErrorCode"))
            ok = self._send_json(handler, code, body, extra)
            self._update(recs, write_ok=ok)

    def _answer_messages(
        self,
        handler: _Handler,
        path: str,
        recs: list[PostmarkRequest],
        status_override: int | None,
    ) -> None:
        results = []
        for rec in recs:
            mode = "200" if status_override == 200 else rec.mode
            if mode == "422":
                addr = rec.to[0] if rec.to else rec.recipient
                result = {"ErrorCode": 300, "Message": f"Invalid 'To' address: '{addr}'."}
            elif mode == "406":
                result = {
                    "ErrorCode": 406,
                    "Message": (
                        "You tried to send to recipient(s) that have been marked as "
                        f"inactive. Found inactive addresses: {rec.recipient}. Inactive "
                        "recipients are ones that have generated a hard bounce, a spam "
                        "complaint, or a manual suppression. "
                    ),
                }
            else:
                result = {
                    "To": rec.data.get("To", ""),
                    "SubmittedAt": datetime.now(UTC).isoformat(),
                    "MessageID": str(uuid.uuid4()),
                    "ErrorCode": 0,
                    "Message": "OK",
                }
            results.append(result)

        if path in SINGLE_ENDPOINTS:
            status = 200 if results[0]["ErrorCode"] == 0 else 422
            body: Any = results[0]
        else:
            status, body = 200, results
        for rec, result in zip(recs, results, strict=True):
            self._update(
                [rec],
                status=status,
                error_code=result["ErrorCode"],
                postmark_message_id=result.get("MessageID"),
            )
        ok = self._send_json(handler, status, body)
        self._update(recs, write_ok=ok)

    @staticmethod
    def _reset_connection(handler: _Handler) -> None:
        handler.close_connection = True
        conn = handler.connection
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        conn.close()  # with linger 0 this sends a TCP RST instead of a FIN


def _split(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [f"{name} <{addr}>" if name else addr for name, addr in getaddresses([str(value)])]


def main() -> None:
    """Serve a fake Postmark in this process until SIGTERM/SIGINT (for benchmarks)."""
    import argparse
    import contextlib
    import signal

    parser = argparse.ArgumentParser(description="Fake Postmark API on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--token", default="test-server-token")
    parser.add_argument("--faults", default="",
                        help='a mix of modes, e.g. "503=0.2,429:1=0.05,hang:2=0.05,reset=0.02"')
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault mix")
    parser.add_argument("--permanent-domain", action="append", default=[],
                        help="recipients in this domain are always answered 422 (repeatable)")
    args = parser.parse_args()
    fake = FakePostmark(server_token=args.token)
    fake.latency = args.latency
    try:
        fake.set_faults(parse_faults(args.faults), seed=args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    fake.permanent_domains = {d.lower() for d in args.permanent_domain}
    server = _Server((fake.host, args.port), _Handler)
    server.fake = fake
    fake._server, fake.port = server, server.server_address[1]
    print(f"listening {fake.url}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a person stops it
            server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

