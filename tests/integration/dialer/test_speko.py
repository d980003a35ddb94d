"""The Speko dialer against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.provider import Provider, Reply
from worker.dialer.port import DialOutcome, DialRequest, OutcomeKind
from worker.dialer.speko import MAX_BODY, SpekoDialer

REQUEST = DialRequest(
    "cb_1",
    "cb_1.1",
    {"to": "+12015551234", "agentId": "agent_1", "metadata": {"callback_id": "cb_1"}},
)


def _dialer(url: str, read_timeout: float = 2.0) -> SpekoDialer:
    return SpekoDialer(
        url, "sk_test_key", connect_timeout=1.0, read_timeout=read_timeout, pool_size=4
    )


@pytest.fixture
def dialer(provider: Provider) -> Iterator[SpekoDialer]:
    d = _dialer(provider.url)
    yield d
    d.close()


def test_placed_call_sends_the_contract_request(provider: Provider, dialer: SpekoDialer) -> None:
    outcome = dialer.dial(REQUEST)
    assert outcome.kind is OutcomeKind.PLACED
    assert outcome.session_id == provider.calls["cb_1.1"]
    (req,) = provider.requests
    assert req.path == "/v1/sessions/phone"
    assert req.headers["authorization"] == "Bearer sk_test_key"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["idempotency-key"] == "cb_1.1"
    assert req.body == REQUEST.body


@pytest.mark.parametrize(
    ("reply", "kind", "in_cause"),
    [
        (
            Reply(400, {"error": "Invalid request body", "code": "VALIDATION_ERROR"}),
            OutcomeKind.PERMANENT,
            "HTTP 400 VALIDATION_ERROR: Invalid request body",
        ),
        (
            Reply(404, {"error": "not found", "code": "NOT_FOUND"}),
            OutcomeKind.PERMANENT,
            "HTTP 404 NOT_FOUND",
        ),
        (
            Reply(401, {"error": "Unauthorized", "code": "UNAUTHORIZED"}),
            OutcomeKind.KEY_REJECTED,
            "rejected our API key",
        ),
        (
            Reply(429, {"error": "slow down", "code": "RATE_LIMITED"}, {"Retry-After": "7"}),
            OutcomeKind.TRANSIENT,
            "HTTP 429",
        ),
        (Reply(500, b"oops"), OutcomeKind.TRANSIENT, "HTTP 500: oops"),
        (Reply(200, b'{"status": "dialing"}'), OutcomeKind.UNKNOWN, "not a VoiceDialResponse"),
        (Reply(200, b"not json at all"), OutcomeKind.UNKNOWN, "may have been placed"),
        (Reply(200, {"sessionId": "s" * 257}), OutcomeKind.UNKNOWN, "not a VoiceDialResponse"),
    ],
)
def test_answers_are_classified(
    provider: Provider, dialer: SpekoDialer, reply: Reply, kind: OutcomeKind, in_cause: str
) -> None:
    provider.behaviour = lambda _req: reply
    outcome = dialer.dial(REQUEST)
    assert outcome.kind is kind
    assert in_cause in outcome.cause
    if reply.status == 429:
        assert outcome.retry_after == 7.0


def test_read_timeout_is_transient(provider: Provider) -> None:
    provider.behaviour = lambda _req: Reply(200, delay=1.5)
    d = _dialer(provider.url, read_timeout=0.3)
    outcome = d.dial(REQUEST)
    d.close()
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert "read timeout" in outcome.cause
    assert outcome.maybe_placed, "the request was sent: it may have rung"


def test_connection_refused_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = _dialer(f"http://127.0.0.1:{port}")
    outcome = d.dial(REQUEST)
    d.close()
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert "could not reach provider" in outcome.cause
    assert not outcome.maybe_placed


def test_wrong_key_is_rejected_by_the_stand_in(provider: Provider) -> None:
    d = SpekoDialer(provider.url, "sk_wrong", connect_timeout=1, read_timeout=1, pool_size=1)
    outcome = d.dial(REQUEST)
    d.close()
    assert outcome.kind is OutcomeKind.KEY_REJECTED
    assert "sk_wrong" not in outcome.cause, "never a secret in a cause"


def test_connections_are_reused_across_dials(provider: Provider, dialer: SpekoDialer) -> None:
    for i in range(20):
        outcome = dialer.dial(DialRequest(f"cb_{i}", f"cb_{i}.1", {"to": "+12015551234"}))
        assert outcome.kind is OutcomeKind.PLACED
    assert len(provider.calls) == 20
    assert provider.connections <= 2


@pytest.mark.parametrize("status", [200, 500])
def test_an_answer_too_large_is_not_read_to_its_end(
    provider: Provider, dialer: SpekoDialer, status: int
) -> None:
    provider.behaviour = lambda _req: Reply(status, b"x" * (MAX_BODY * 8))
    outcome = dialer.dial(REQUEST)
    if status == 200:
        assert outcome.kind is OutcomeKind.UNKNOWN, "a 2xx may have rung: never re-dialed"
        assert f"body over {MAX_BODY} bytes" in outcome.cause
    else:
        assert outcome.kind is OutcomeKind.TRANSIENT
        assert outcome.cause.startswith("HTTP 500: xxx")


class RawAnswer:
    """A server on 127.0.0.1 that answers every request with ``head`` and then ``chunks``
    of a chunked body, ``pause`` seconds apart (a provider that lies about its size, or
    trickles): what http.server in the stand-in cannot send."""

    def __init__(self, chunks: Iterator[bytes], pause: float) -> None:
        self.chunks, self.pause = chunks, pause
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            try:
                for chunk in self.chunks:
                    if self.stop.wait(self.pause):
                        return
                    conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                conn.sendall(b"0\r\n\r\n")
            except OSError:
                return  # the dialer hung up: what it should do

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(timeout=5)


def _dial_raw(server: RawAnswer, read_timeout: float = 2.0) -> DialOutcome:
    d = _dialer(server.url, read_timeout=read_timeout)
    try:
        return d.dial(REQUEST)
    finally:
        d.close()
        server.close()


def test_a_chunked_answer_without_end_is_cut_at_the_limit() -> None:
    outcome = _dial_raw(RawAnswer(itertools.repeat(b"y" * 8192), pause=0))
    assert outcome.kind is OutcomeKind.UNKNOWN
    assert f"body over {MAX_BODY} bytes" in outcome.cause


def test_a_trickled_answer_times_out_as_a_read_timeout() -> None:
    # A byte every 0.1 s passes a 0.5 s per-read timeout every time; the body as a whole
    # must still come within it.
    outcome = _dial_raw(RawAnswer(itertools.repeat(b"{"), pause=0.1), read_timeout=0.5)
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert "read timeout" in outcome.cause
    assert outcome.maybe_placed, "the request was sent: it may have rung"
