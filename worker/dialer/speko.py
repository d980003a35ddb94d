"""The Speko dialer: ``POST {SPEKO_API_URL}/v1/sessions/phone`` on aiohttp, in one event
loop per worker process that the dispatching threads hand their requests to.

Chosen by measurement: a worker process is bound by its GIL, and a request on aiohttp in
one event loop costs less of it than one on urllib3 in a thread per dial in flight
(README, Performance; ``tests/perf/bench_http_clients.py``). ``dial`` still answers one
request synchronously (the dialer port); ``submit`` starts one and returns at once, so a
dispatch batch needs no thread per dial.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp

from worker.dialer.event_loop import LoopThread
from worker.dialer.port import SESSION_ID_MAX_LENGTH, DialOutcome, DialRequest, OutcomeKind

log = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({408, 425, 429})
KEY_REJECTED_STATUSES = frozenset({401, 403})
MAX_ERROR_TEXT = 300
MAX_BODY = 64 * 1024
"""Bytes of an answer read at most: a VoiceDialResponse or an error is a few hundred. A
provider that answers more (or a proxy's page) is not read to its end into memory."""


class SpekoDialer:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
    ) -> None:
        self._url = base_url.rstrip("/") + "/v1/sessions/phone"
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "callbacks-worker",
        }
        # ``connect`` covers waiting for one of the pool's connections and opening it:
        # past it nothing was sent, so the dial is safely transient. ``sock_read``: the
        # request went out and no answer came, so it may have rung.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=read_timeout
        )
        self._pool_size = pool_size
        self._loop = LoopThread("dialer")
        self._session: aiohttp.ClientSession | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    def close(self) -> None:
        self._loop.close(self._close_session)

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def dial(self, request: DialRequest) -> DialOutcome:
        return self._loop.submit(self._dial(request)).result()

    def start(
        self, requests: Sequence[DialRequest], done: Callable[[int, DialOutcome], None]
    ) -> None:
        # One hand-over for the batch, and a plain callback per answer: a future per dial
        # (and concurrent.futures.wait over all of them at each return) cost the GIL more
        # than the dials' own bookkeeping (tests/perf, py-spy).
        async def dial_all() -> None:
            for i, request in enumerate(requests):
                task = asyncio.create_task(self._answer(i, request, done))
                # The loop keeps only a weak reference to a task: hold it until it ends.
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)

        self._loop.submit(dial_all())

    async def _answer(
        self, i: int, request: DialRequest, done: Callable[[int, DialOutcome], None]
    ) -> None:
        try:
            outcome = await self._dial(request)
        except Exception as exc:
            # _dial turns every failure it knows into an outcome; anything else may have
            # gone out after the request was sent, so it may have rung.
            log.exception("callback %s: the dialer raised", request.callback_id)
            outcome = DialOutcome(OutcomeKind.UNKNOWN, f"dialer error: {exc!r}", maybe_placed=True)
        done(i, outcome)

    def _http(self) -> aiohttp.ClientSession:
        # Made on the loop that uses it (an aiohttp session belongs to its loop).
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=0),
                timeout=self._timeout,
            )
        return self._session

    async def _dial(self, request: DialRequest) -> DialOutcome:
        headers = {**self._headers, "Idempotency-Key": request.idempotency_key}
        try:
            async with self._http().post(
                self._url,
                data=json.dumps(request.body).encode(),
                headers=headers,
                # aiohttp re-sends only idempotent methods on a connection found closed, never
                # a POST: whether to re-send is the dispatch logic's call.
                allow_redirects=False,
            ) as response:
                # The body, like the headers, within the read timeout: a provider trickling
                # bytes would pass every per-read timeout and hold the dial for ever.
                async with asyncio.timeout(self._timeout.sock_read):
                    data, whole = await _read_capped(response)
                if not whole and 200 <= response.status < 300:
                    return DialOutcome(
                        OutcomeKind.UNKNOWN,
                        f"provider answered {response.status} with a body over {MAX_BODY} "
                        "bytes, not a VoiceDialResponse; the call may have been placed, so it "
                        "is not re-dialed",
                        http_status=response.status,
                    )
                return classify(response.status, data, response.headers.get("Retry-After"))
        except aiohttp.ConnectionTimeoutError as exc:
            return _transient(f"could not reach provider (connect timeout): {_short(exc)}")
        except aiohttp.ClientConnectorError as exc:
            return _transient(f"could not reach provider: {_short(exc)}")
        except (TimeoutError, aiohttp.ServerTimeoutError):
            # The request was sent: the provider may have placed the call. Re-sending is
            # safe only with this same Idempotency-Key, which the retry path keeps.
            return _transient("provider did not answer in time (read timeout)", maybe_placed=True)
        except aiohttp.ClientError as exc:
            return _transient(
                f"connection to provider broke: {_short(exc) or type(exc).__name__}",
                maybe_placed=True,
            )


async def _read_capped(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """Up to :data:`MAX_BODY` bytes of the body, and whether that was all of it."""
    length = response.content_length
    if length is not None and length <= MAX_BODY:
        return await response.read(), True  # the usual answer: one read, as before
    data = bytearray()
    async for chunk in response.content.iter_chunked(MAX_BODY):
        data += chunk
        if len(data) > MAX_BODY:
            return bytes(data[:MAX_BODY]), False
    return bytes(data), True


def classify(status: int, data: bytes, retry_after_header: str | None) -> DialOutcome:
    """Turn one HTTP answer into an outcome (pure: unit-tested without a server)."""
    if 200 <= status < 300:
        session_id = _session_id(data)
        if session_id is None:
            return DialOutcome(
                OutcomeKind.UNKNOWN,
                f"provider answered {status} but the body is not a VoiceDialResponse "
                f"({_snippet(data)!r}); the call may have been placed, so it is not re-dialed",
                http_status=status,
            )
        return DialOutcome.placed(session_id, status)
    code, message = _error_body(data)
    said = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    if status in KEY_REJECTED_STATUSES:
        return DialOutcome(
            OutcomeKind.KEY_REJECTED,
            f"provider rejected our API key ({said}); check SPEKO_API_KEY",
            http_status=status,
            provider_code=code,
        )
    if status in TRANSIENT_STATUSES or status >= 500:
        return DialOutcome(
            OutcomeKind.TRANSIENT,
            said,
            http_status=status,
            provider_code=code,
            retry_after=parse_retry_after(retry_after_header),
        )
    return DialOutcome(OutcomeKind.PERMANENT, said, http_status=status, provider_code=code)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _session_id(data: bytes) -> str | None:
    try:
        doc: Any = json.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    session_id = doc.get("sessionId")
    # Longer than we can store is not a session id we can act on: read as no answer.
    if not isinstance(session_id, str) or not session_id.strip():
        return None
    return session_id if len(session_id) <= SESSION_ID_MAX_LENGTH else None


def _error_body(data: bytes) -> tuple[str | None, str | None]:
    try:
        doc: Any = json.loads(data)
    except ValueError:
        return None, _snippet(data) or None
    if not isinstance(doc, dict):
        return None, _snippet(data)
    code, error = doc.get("code"), doc.get("error")
    return (
        str(code)[:64] if code is not None else None,
        str(error)[:MAX_ERROR_TEXT] if error is not None else None,
    )


def _snippet(data: bytes) -> str:
    return data[:120].decode("utf-8", "replace")


def _short(exc: BaseException) -> str:
    return str(exc)[:MAX_ERROR_TEXT]


def _transient(cause: str, *, maybe_placed: bool = False) -> DialOutcome:
    return DialOutcome(OutcomeKind.TRANSIENT, cause, maybe_placed=maybe_placed)
