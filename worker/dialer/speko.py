"""The Speko dialer: ``POST {SPEKO_API_URL}/v1/sessions/phone`` over a pooled urllib3 client.

urllib3 was chosen by measurement (``tests/perf/bench_http_clients.py``): its pool is
thread-safe, so one pool serves every thread of a worker process.
"""

from __future__ import annotations

import email.utils
import json
import logging
from datetime import UTC, datetime
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, ProtocolError, ReadTimeoutError

from worker.dialer.port import SESSION_ID_MAX_LENGTH, DialOutcome, DialRequest, OutcomeKind

log = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({408, 425, 429})
KEY_REJECTED_STATUSES = frozenset({401, 403})
MAX_ERROR_TEXT = 300


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
        self._http = urllib3.PoolManager(
            num_pools=4,
            maxsize=pool_size,
            block=False,  # beyond the pool size, open a throwaway connection rather than wait
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            # Never retry inside the client: whether to re-send is the dispatch logic's call.
            retries=False,
        )

    def close(self) -> None:
        self._http.clear()

    def dial(self, request: DialRequest) -> DialOutcome:
        headers = {**self._headers, "Idempotency-Key": request.idempotency_key}
        try:
            response = self._http.request(
                "POST",
                self._url,
                body=json.dumps(request.body).encode(),
                headers=headers,
                preload_content=True,
            )
        except ReadTimeoutError:
            # The request was sent: the provider may have placed the call. Re-sending is
            # safe only with this same Idempotency-Key, which the retry path keeps.
            return _transient("provider did not answer in time (read timeout)", maybe_placed=True)
        except ProtocolError as exc:
            return _transient(f"connection to provider broke: {_short(exc)}", maybe_placed=True)
        except HTTPError as exc:
            return _transient(f"could not reach provider: {_short(exc)}")
        return classify(response.status, response.data, response.headers.get("Retry-After"))


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
