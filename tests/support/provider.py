"""A stand-in for the platform's ``POST /v1/sessions/phone``: a real HTTP server on 127.0.0.1.

It logs every request, answers per a ``behaviour`` function, and — like a provider that
honours ``Idempotency-Key`` — answers a repeated key with the call it already placed.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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


class _Server(ThreadingHTTPServer):
    # http.server listens with a backlog of 5: a worker's burst of hundreds of dials then
    # had connections dropped by the kernel and retried after 1 s and 3 s, past the
    # dialer's 3 s connect timeout, so a dial that never arrived was retried (a second
    # attempt with the same key) on a loaded machine. A real provider's backlog is deep.
    request_queue_size = 1024
    daemon_threads = True


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
        if isinstance(reply.body, bytes):
            return reply, reply.body
        if reply.body is not None:
            return reply, json.dumps(reply.body).encode()
        if 200 <= reply.status < 300:
            return reply, self._dial_response(req, session_id)
        return reply, json.dumps({"error": "stand-in error", "code": "TEST"}).encode()

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

        return Handler


@contextmanager
def running_provider(behaviour: Behaviour = placed) -> Iterator[Provider]:
    provider = Provider(behaviour).start()
    try:
        yield provider
    finally:
        provider.stop()
