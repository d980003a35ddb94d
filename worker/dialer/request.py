"""Build the ``VoiceDialRequest`` for a callback (DESIGN.md, dialer contract)."""

from __future__ import annotations

from typing import Any, Protocol

from worker.dialer.port import DialRequest


class Dialable(Protocol):
    """What a dial request is built from: a callback's fields (``worker.db.models``)."""

    @property
    def id(self) -> str: ...
    @property
    def idempotency_key(self) -> str: ...
    @property
    def organization_id(self) -> str: ...
    @property
    def source_session_id(self) -> str | None: ...
    @property
    def agent_id(self) -> str | None: ...
    @property
    def phone_number_id(self) -> str | None: ...
    @property
    def to_number(self) -> str: ...
    @property
    def from_number(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def instructions(self) -> str | None: ...
    @property
    def summary(self) -> str | None: ...
    @property
    def pipeline_config(self) -> dict[str, Any]: ...
    @property
    def metadata_(self) -> dict[str, Any]: ...


PASSTHROUGH = (
    "intent",
    "constraints",
    "voice",
    "systemPrompt",
    "firstMessage",
    "llm",
    "ttsOptions",
    "sttOptions",
    "telephony",
)


def dial_request(callback: Dialable) -> DialRequest:
    body: dict[str, Any] = {"to": callback.to_number}
    if callback.from_number:
        body["from"] = callback.from_number
    if callback.agent_id:
        body["agentId"] = callback.agent_id
    for key in PASSTHROUGH:
        if key in callback.pipeline_config:
            body[key] = callback.pipeline_config[key]
    # The agent on the new call must know why it is calling; ours win over the caller's.
    body["metadata"] = {
        **callback.metadata_,
        "callback_id": callback.id,
        "organization_id": callback.organization_id,
        "source_session_id": callback.source_session_id,
        "phone_number_id": callback.phone_number_id,
        "reason": callback.reason,
        "instructions": callback.instructions,
        "summary": callback.summary,
    }
    return DialRequest(callback.id, callback.idempotency_key, body)
