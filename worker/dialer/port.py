"""The dialer port: what the dispatch logic asks of whatever places the call.

An adapter turns every answer — and every way of not getting one — into exactly one
:class:`DialOutcome`; it never raises for a provider's behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class DialRequest:
    callback_id: str
    idempotency_key: str
    body: dict[str, Any]
    """A ``VoiceDialRequest`` (spec/speko-openapi-excerpt.json)."""


class OutcomeKind(StrEnum):
    PLACED = "placed"
    TRANSIENT = "transient"
    """Not placed, safe to try again with the same key (connection, timeout, 408/425/429, 5xx)."""
    PERMANENT = "permanent"
    """The provider refused this call (400, 404, other 4xx): retrying will not help."""
    KEY_REJECTED = "key_rejected"
    """401/403: our own API key is wrong; nothing about this callback."""
    UNKNOWN = "unknown"
    """The call may be ringing (a 2xx we could not read): never dial it again on our own."""


SESSION_ID_MAX_LENGTH = 256
"""The longest ``sessionId`` we store (``callbacks.created_session_id``)."""


@dataclass(frozen=True)
class DialOutcome:
    kind: OutcomeKind
    cause: str = ""
    """Words an operator can act on: HTTP status, provider code and error."""
    session_id: str | None = None
    http_status: int | None = None
    provider_code: str | None = None
    retry_after: float | None = None
    maybe_placed: bool = False
    """The request reached the provider but no answer came back: it may have rung."""
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def placed(cls, session_id: str, http_status: int = 200) -> DialOutcome:
        return cls(OutcomeKind.PLACED, session_id=session_id, http_status=http_status)


class Dialer(Protocol):
    def dial(self, request: DialRequest) -> DialOutcome: ...

    def close(self) -> None: ...


@runtime_checkable
class ConcurrentDialer(Dialer, Protocol):
    """A dialer that starts a batch's dials at once and returns: they then run side by side
    without a thread each."""

    def start(
        self, requests: Sequence[DialRequest], done: Callable[[int, DialOutcome], None]
    ) -> None:
        """Start every request; ``done(i, outcome)`` is called exactly once for each, as
        ``requests[i]`` returns, from another thread, with the outcome ``dial`` would
        return (never an exception)."""
