"""A stand-in for the platform's ``POST /v1/sessions/phone``: a real HTTP server on 127.0.0.1.

It logs every request, answers per a ``behaviour`` function, and — like a provider that
honours ``Idempotency-Key`` — answers a repeated key with the call it already placed.

After a call it placed, it can also tell the receiver how the call went, as the
platform's webhooks do (:meth:`Provider.push_events_to`): a signed ``call.hangup`` (or
``call.report`` for voicemail) per the number's behaviour, a share of them dropped so
the worker's pull must find those outcomes (the platform sends call-control events once).
"""

from __future__ import annotations

import hashlib
import json
import queue
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.support.webhooks_in import event as platform_event
from tests.support.webhooks_in import signed


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes | dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    places_call: bool | None = None
    """Whether the call rings; default: only for 2xx answers."""


Behaviour = Callable[[Received], Reply]

OUTCOMES = ("answered", "no_answer", "busy", "voicemail")
"""What a number's calls do (``Provider.call_behaviours``)."""


def outcome_mix(
    numbers: list[str], *, no_answer: float, busy: float, voicemail: float
) -> dict[str, str]:
    """Each number's behaviour, in exact shares of ``numbers`` (the rest answer)."""
    n = len(numbers)
    cuts = [
        ("no_answer", round(n * no_answer)),
        ("busy", round(n * busy)),
        ("voicemail", round(n * voicemail)),
    ]
    out: dict[str, str] = {}
    index = 0
    for behaviour, count in cuts:
        for number in numbers[index : index + count]:
            out[number] = behaviour
        index += count
    for number in numbers[index:]:
        out[number] = "answered"
    return out


SIP_OF = {"answered": 200, "no_answer": 480, "busy": 486}


def outcome_event(behaviour: str, session_id: str, org: str) -> dict[str, Any]:
    """The platform's decisive event for a call that did ``behaviour``."""
    data: dict[str, Any] = {"session_id": session_id, "organization_id": org}
    if behaviour == "voicemail":
        return platform_event("call.report", data | {"voicemail": {"detected": True}})
    return platform_event(
        "call.hangup",
        data | {"call_id": session_id, "sip_status_code": SIP_OF[behaviour]},
    )


@dataclass
class Pushes:
    """The stand-in's own webhooks to the receiver, as the platform would send them."""

    url: str
    secret: str
    drop_share: float = 0.0
    """Share of calls whose event is never sent (chosen by a hash of the session id)."""
    delay: float = 1.0
    """Seconds after the dial's answer before the event is sent (the call rings, ends)."""
    copies: int = 1
    """How many times each event is sent (a platform retrying a delivery it thinks lost)."""
    sent_at: dict[str, float] = field(default_factory=dict)
    """session id -> when its event was first answered 2xx by the receiver."""
    dropped: set[str] = field(default_factory=set)
    answers: Counter[str] = field(default_factory=Counter)

    def drops(self, session_id: str) -> bool:
        digest = hashlib.sha256(session_id.encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < self.drop_share


class _Server(ThreadingHTTPServer):
    # http.server listens with a backlog of 5: a worker's burst of hundreds of dials then
    # had connections dropped by the kernel and retried after 1 s and 3 s, past the
    # dialer's 3 s connect timeout, so a dial that never arrived was retried (a second
    # attempt with the same key) on a loaded machine. A real provider's backlog is deep.
    request_queue_size = 1024
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A dialer that stops reading (an answer over its limit, a timeout) hangs up while
        # the stand-in still writes: expected, not a traceback in the test output.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def placed(req: Received) -> Reply:
    return Reply(200)


class Provider:
    def __init__(self, behaviour: Behaviour = placed, api_key: str = "sk_test_key") -> None:
        self.behaviour = behaviour
        self.api_key = api_key
        self.requests: list[Received] = []
        self.calls: dict[str, str] = {}
        """Idempotency-Key -> sessionId of every call actually placed."""
        self.duplicates = 0
        self.connections = 0
        # --- the platform's side after a dial (issue 14): /v1/calls/{id}[/events|/report]
        self.numbers: dict[str, str] = {}
        """sessionId -> the number it called, for every call placed."""
        self.call_behaviours: dict[str, str] = {}
        """number -> what its calls do: answered (default), no_answer, busy, voicemail."""
        self.calls_down = False
        """True: every GET /v1/calls/... answers 503 (the platform is down)."""
        self.orgs: dict[str, str] = {}
        """sessionId -> the organization the dial named (metadata.organization_id)."""
        self.pushes: Pushes | None = None
        self._outbox: queue.PriorityQueue[tuple[float, int, str]] = queue.PriorityQueue()
        self._pushed = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> Provider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, req: Received) -> tuple[Reply, bytes]:
        key = req.headers.get("idempotency-key", "")
        with self._lock:
            self.requests.append(req)
            if key and key in self.calls:
                return Reply(200), self._dial_response(req, self.calls[key])
        reply = self.behaviour(req)
        rings = reply.places_call if reply.places_call is not None else 200 <= reply.status < 300
        session_id = f"sess_{uuid.uuid4().hex[:16]}"
        if rings:
            with self._lock:
                if key in self.calls:
                    self.duplicates += 1
                self.calls[key] = session_id
                if isinstance(req.body, dict):
                    self.numbers[session_id] = str(req.body.get("to", ""))
                    meta = req.body.get("metadata")
                    if isinstance(meta, dict) and isinstance(meta.get("organization_id"), str):
                        self.orgs[session_id] = meta["organization_id"]
                if self.pushes is not None:
                    self._pushed += 1
                    self._outbox.put((time.time() + self.pushes.delay, self._pushed, session_id))
        if isinstance(reply.body, bytes):
            return reply, reply.body
        if reply.body is not None:
            return reply, json.dumps(reply.body).encode()
        if 200 <= reply.status < 300:
            return reply, self._dial_response(req, session_id)
        return reply, json.dumps({"error": "stand-in error", "code": "TEST"}).encode()

    def push_events_to(
        self,
        url: str,
        secret: str,
        *,
        drop_share: float = 0.0,
        delay: float = 1.0,
        copies: int = 1,
        senders: int = 4,
    ) -> Pushes:
        """From now on, every call placed is followed by its signed outcome event to
        ``url`` (the receiver), ``delay`` seconds after the dial answered, by ``senders``
        threads; ``drop_share`` of them are never sent."""
        self.pushes = Pushes(url, secret, drop_share=drop_share, delay=delay, copies=copies)
        for _ in range(senders):
            threading.Thread(target=self._push_loop, args=(self.pushes,), daemon=True).start()
        return self.pushes

    def _push_loop(self, pushes: Pushes) -> None:
        with httpx.Client(timeout=30) as http:
            while True:
                due, _, session_id = self._outbox.get()
                if due > time.time():
                    time.sleep(min(due - time.time(), 0.05))
                    self._outbox.put((due, _, session_id))
                    continue
                with self._lock:
                    number = self.numbers.get(session_id, "")
                    org = self.orgs.get(session_id, "org_a")
                    behaviour = self.call_behaviours.get(number, "answered")
                if pushes.drops(session_id):
                    with self._lock:
                        pushes.dropped.add(session_id)
                    continue
                body = outcome_event(behaviour, session_id, org)
                raw, headers = signed(pushes.secret, body)
                for _copy in range(pushes.copies):
                    try:
                        status = http.post(pushes.url, content=raw, headers=headers).status_code
                        answer = str(status)
                    except httpx.TransportError as exc:
                        status, answer = 0, type(exc).__name__
                    with self._lock:
                        pushes.answers[answer] += 1
                        if 200 <= status < 300:
                            pushes.sent_at.setdefault(session_id, time.time())

    def add_call(self, session_id: str, number: str) -> None:
        """A call the platform placed (as if dialed): readable at /v1/calls/{session_id}."""
        with self._lock:
            self.numbers[session_id] = number

    def call_view(self, path: str) -> tuple[int, dict[str, Any]]:
        """``GET /v1/calls/{id}``, ``.../events``, ``.../report`` per the number's behaviour."""
        parts = path.split("?", 1)[0].strip("/").split("/")
        if len(parts) < 3 or parts[:2] != ["v1", "calls"] or len(parts) > 4:
            return 404, {"error": "Not found", "code": "NOT_FOUND"}
        if self.calls_down:
            return 503, {"error": "down", "code": "UNAVAILABLE"}
        session_id = parts[2]
        with self._lock:
            number = self.numbers.get(session_id)
            org = self.orgs.get(session_id, "org_a")
        if number is None:
            return 404, {"error": "Not found", "code": "NOT_FOUND"}
        behaviour = self.call_behaviours.get(number, "answered")
        base = {"session_id": session_id, "organization_id": org, "provider": "stand-in"}

        def event(kind: str, **fields: Any) -> dict[str, Any]:
            fields.setdefault("sip_status_code", None)
            fields.setdefault("status", None)
            fields.setdefault("failure_cause", None)
            return {"id": f"ev_{kind}", "event_type": kind, "payload": {}, **base, **fields}

        events = [event("call.initiated"), event("call.ringing")]
        report: dict[str, Any] | None = None
        if behaviour == "no_answer":
            events.append(event("call.hangup", sip_status_code=480, failure_cause="no answer"))
        elif behaviour == "busy":
            events.append(event("call.hangup", sip_status_code=486, sip_status="Busy Here"))
        elif behaviour == "voicemail":
            events += [event("call.answered"), event("call.hangup", status="ended")]
            report = {**base, "outcome": "left a message", "voicemail": {"detected": True}}
        else:
            events += [event("call.answered"), event("call.hangup", status="ended")]
            report = {**base, "outcome": "answered", "voicemail": {"detected": False}}
        if len(parts) == 3:
            return 200, {
                "id": session_id,
                "call_id": session_id,
                "status": "ended",
                "report": report,
            }
        if parts[3] == "events":
            return 200, {"events": events}
        if parts[3] == "report":
            return (200, report) if report is not None else (404, {"error": "Not found"})
        return 404, {"error": "Not found", "code": "NOT_FOUND"}

    @staticmethod
    def _dial_response(req: Received, session_id: str) -> bytes:
        body = req.body if isinstance(req.body, dict) else {}
        return json.dumps(
            {
                "sessionId": session_id,
                "callControlId": f"cc_{session_id}",
                "roomName": f"room_{session_id}",
                "status": "dialing",
                "to": body.get("to", ""),
                "from": body.get("from", "+12015550000"),
            }
        ).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw
                req = Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()
                )
                if req.headers.get("authorization") != f"Bearer {provider.api_key}":
                    reply, data = Reply(401), b'{"error":"Unauthorized","code":"UNAUTHORIZED"}'
                    with provider._lock:
                        provider.requests.append(req)
                else:
                    reply, data = provider._answer(req)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout); the call may still have been placed

            def do_GET(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {provider.api_key}":
                    status, body = 401, {"error": "Unauthorized", "code": "UNAUTHORIZED"}
                else:
                    status, body = provider.call_view(self.path)
                data = json.dumps(body).encode()
                with provider._lock:
                    provider.requests.append(
                        Received(self.path, dict(self.headers.items()), None, time.time())
                    )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@contextmanager
def running_provider(behaviour: Behaviour = placed) -> Iterator[Provider]:
    provider = Provider(behaviour).start()
    try:
        yield provider
    finally:
        provider.stop()
