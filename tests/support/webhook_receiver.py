"""A customer's webhook receiver: a real HTTP server on 127.0.0.1 that records each
request and answers with the next of its scripted replies (200 when none is left)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = 0.0
    """Wall-clock time it arrived (time.time())."""


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Behaviour = Callable[[Hit, bool], tuple[Answer, float] | None]
"""Given a request and whether its ``webhook-id`` is new: the answer and the seconds it
takes, or ``None`` for the receiver's usual one."""


class Receiver:
    def __init__(
        self,
        *,
        fail_every: int = 0,
        delay: float = 0.0,
        status: int = 200,
        port: int = 0,
        behaviour: Behaviour | None = None,
    ) -> None:
        """``fail_every``: the first arrival of every n-th new ``webhook-id`` is answered 500
        (its retry 5 s later succeeds); ``delay``: seconds each answer takes (a slow or
        hanging endpoint); ``status``: the answer when no script says otherwise (500: a
        broken endpoint); ``port``: where to listen (0: any free one); ``behaviour``: an
        answer per request (see :data:`Behaviour`)."""
        self.status = status
        self.behaviour = behaviour
        self.hits: list[Hit] = []
        self.script: deque[Answer] = deque()
        self.fail_every = fail_every
        self.delay = delay
        self.in_flight = 0
        self.ids: set[str | None] = set()
        self.most_in_flight = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    hit = Hit(self.path, dict(self.headers.items()), body, time.time())
                    receiver.hits.append(hit)
                    message_id = self.headers.get("webhook-id")
                    new = message_id not in receiver.ids
                    receiver.ids.add(message_id)
                    n = len(receiver.ids)
                    answer = (
                        receiver.script.popleft() if receiver.script else Answer(receiver.status)
                    )
                if receiver.fail_every and new and n % receiver.fail_every == 0:
                    answer = Answer(500)
                delay = receiver.delay
                chosen = receiver.behaviour(hit, new) if receiver.behaviour else None
                if chosen is not None:
                    answer, delay = chosen
                if delay:
                    with receiver.lock:
                        receiver.in_flight += 1
                        receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                    time.sleep(delay)
                    with receiver.lock:
                        receiver.in_flight -= 1
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.delay = 0.0
        self.server.shutdown()
        self.server.server_close()
