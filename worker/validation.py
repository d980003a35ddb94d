"""What a new callback must look like. Bad input is refused with a message that says why."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Annotated, Any

import phonenumbers
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from worker.datetimes import MAX_LATENESS_SECONDS, When
from worker.pacing.windows import valid_zone_name

MAX_JSON_BYTES = 64 * 1024


def e164(value: str) -> str:
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{value!r} is not an E.164 phone number (+<country><number>)") from exc
    canonical = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if canonical != value:
        raise ValueError(f"{value!r} is not in E.164 form; did you mean {canonical!r}?")
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{value!r} is not a valid phone number")
    return value


def json_object(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value, separators=(",", ":"))) > MAX_JSON_BYTES:
        raise ValueError(f"must serialize to at most {MAX_JSON_BYTES} bytes of JSON")
    return value


E164 = Annotated[str, AfterValidator(e164)]
JsonObject = Annotated[dict[str, Any], AfterValidator(json_object)]


def metadata_timezone(value: dict[str, Any]) -> dict[str, Any]:
    """``metadata.timezone``, when given, decides the calling window: it must be a real zone."""
    if "timezone" in value:
        tz = value["timezone"]
        if not isinstance(tz, str):
            raise ValueError("metadata.timezone must be an IANA time zone name (a string)")
        valid_zone_name(tz)
    return value


Metadata = Annotated[JsonObject, AfterValidator(metadata_timezone)]
Ident = Annotated[str, Field(min_length=1, max_length=128)]
Text = Annotated[str, Field(max_length=4000)]


class NewCallback(BaseModel):
    """A callback to create: the API's field names, validated."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    organization_id: Ident
    to_number: E164
    scheduled_at: When
    from_number: E164 | None = None
    agent_id: Ident | None = None
    phone_number_id: Ident | None = None
    source_session_id: Ident | None = None
    reason: Text | None = None
    instructions: Text | None = None
    summary: Text | None = None
    pipeline_config: JsonObject = Field(default_factory=dict)
    metadata: Metadata = Field(default_factory=dict)
    max_lateness_seconds: Annotated[int, Field(ge=60, le=MAX_LATENESS_SECONDS)] | None = None
    """How late it may still be placed (overrides the default); later it expires."""
    idempotency_key: Ident | None = None
    """The same key and callback again returns the first one (worker/creation.py)."""


class InvalidCallback(ValueError):
    """One or more callbacks failed validation; ``problems`` lists each, located."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def describe(exc: ValidationError, where: str = "") -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "callback"
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{where}{field}: {msg}")
    return out


def parse_new_callbacks(items: Iterable[tuple[str, object]]) -> list[NewCallback]:
    """Validate every item (labelled for messages); raise once, listing all problems."""
    parsed: list[NewCallback] = []
    problems: list[str] = []
    for label, raw in items:
        try:
            parsed.append(NewCallback.model_validate(raw))
        except ValidationError as exc:
            problems.extend(describe(exc, f"{label}: " if label else ""))
    if problems:
        raise InvalidCallback(problems)
    return parsed
