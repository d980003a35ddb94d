"""The dialer port's contract, one suite run against every dialer: the log-only dialer,
the Speko dialer against the provider stand-in (a real HTTP server), and the test
dialers. Whatever places the call, dispatch relies on exactly this."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from queue import SimpleQueue

import pytest

from tests.support.dialers import ScriptedDialer
from tests.support.provider import Provider
from worker.dialer.log import LogDialer
from worker.dialer.port import (
    SESSION_ID_MAX_LENGTH,
    ConcurrentDialer,
    Dialer,
    DialOutcome,
    DialRequest,
    OutcomeKind,
)
from worker.dialer.speko import SpekoDialer


@dataclass
class UnderTest:
    dialer: Dialer
    reached: Callable[[], list[tuple[str, object]]]
    """What reached the other side: (Idempotency-Key, body) per request, in order."""


def _log() -> Iterator[UnderTest]:
    dialer = LogDialer()
    yield UnderTest(dialer, lambda: [(r.idempotency_key, r.body) for r in dialer.placed])


def _speko() -> Iterator[UnderTest]:
    provider = Provider().start()
    dialer = SpekoDialer(
        provider.url, provider.api_key, connect_timeout=10.0, read_timeout=30.0, pool_size=8
    )
    try:
        yield UnderTest(
            dialer,
            lambda: [(r.headers["idempotency-key"], r.body) for r in provider.requests],
        )
    finally:
        dialer.close()
        provider.stop()


def _scripted() -> Iterator[UnderTest]:
    dialer = ScriptedDialer([DialOutcome.placed("sess_scripted")])
    yield UnderTest(dialer, lambda: [(r.idempotency_key, r.body) for r in dialer.requests])


@pytest.fixture(params=[_log, _speko, _scripted], ids=["log", "speko", "scripted"])
def under_test(request: pytest.FixtureRequest) -> Iterator[UnderTest]:
    yield from request.param()


@pytest.fixture(params=[_speko], ids=["speko"])
def concurrent_under_test(request: pytest.FixtureRequest) -> Iterator[UnderTest]:
    """The dialers with an event loop of their own (worker.dialer.port.ConcurrentDialer)."""
    yield from request.param()


def _request(n: int = 1) -> DialRequest:
    callback_id = f"cb_{n}"
    return DialRequest(
        callback_id,
        f"{callback_id}.1",
        {
            "to": "+12015551234",
            "agentId": "agent_1",
            "metadata": {"callback_id": callback_id, "reason": "asked to be called back"},
        },
    )


def test_a_dial_is_one_outcome_and_one_request(under_test: UnderTest) -> None:
    outcome = under_test.dialer.dial(_request())
    assert isinstance(outcome, DialOutcome)
    assert outcome.kind is OutcomeKind.PLACED
    assert under_test.reached() == [("cb_1.1", _request().body)]


def test_a_placed_call_has_a_session_id_that_fits_its_column(under_test: UnderTest) -> None:
    outcome = under_test.dialer.dial(_request())
    assert isinstance(outcome.session_id, str)
    assert 0 < len(outcome.session_id) <= SESSION_ID_MAX_LENGTH


def test_dials_from_many_threads_each_get_their_own_answer(under_test: UnderTest) -> None:
    # A worker dials a batch side by side, on one dialer.
    requests = [_request(n) for n in range(40)]
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(under_test.dialer.dial, requests))
    assert all(o.kind is OutcomeKind.PLACED and o.session_id for o in outcomes)
    reached = under_test.reached()
    assert sorted(key for key, _ in reached) == sorted(r.idempotency_key for r in requests)
    assert {key: body for key, body in reached} == {r.idempotency_key: r.body for r in requests}


def test_dials_submitted_at_once_each_get_their_own_answer(
    concurrent_under_test: UnderTest,
) -> None:
    # A dialer with its own event loop: a batch's dials are started without a thread each.
    under_test = concurrent_under_test
    assert isinstance(under_test.dialer, ConcurrentDialer)
    requests = [_request(n) for n in range(40)]
    returned: SimpleQueue[tuple[int, DialOutcome]] = SimpleQueue()
    under_test.dialer.start(requests, lambda i, outcome: returned.put((i, outcome)))
    answers = [returned.get(timeout=30) for _ in requests]
    assert sorted(i for i, _ in answers) == list(range(len(requests))), "once each"
    outcomes = [outcome for _, outcome in answers]
    assert all(o.kind is OutcomeKind.PLACED and o.session_id for o in outcomes)
    assert len({o.session_id for o in outcomes}) == len(requests)
    reached = under_test.reached()
    assert {key: body for key, body in reached} == {r.idempotency_key: r.body for r in requests}
    assert len(reached) == len(requests), "one request per dial, none re-sent"


def test_close_after_use_and_again(under_test: UnderTest) -> None:
    under_test.dialer.dial(_request())
    under_test.dialer.close()
    under_test.dialer.close()
