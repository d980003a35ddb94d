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
MAX_JSON_DEPTH = 32
"""Nesting of ``metadata`` / ``pipeline_config``: deeper than any real payload, far below
the interpreter's recursion limit (a 1,000-level object made ``json.dumps`` raise)."""


def unstorable(value: str) -> str | None:
    """Why PostgreSQL cannot store ``value`` (in ``text`` or ``jsonb``), or None if it can.

    NUL is refused by both; a lone surrogate (``"\\ud800"`` in JSON) is not UTF-8 at all.
    Every path that creates or changes a row (API, CLI flags and files, the schedule task)
    validates through this, so the database never sees either and answers a 500.
    """
    if "\x00" in value:
        return "must not contain the NUL character (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a character that is not valid Unicode text (at position {exc.start})"
    return None


def storable_text(value: str) -> str:
    problem = unstorable(value)
    if problem:
        raise ValueError(problem)
    return value


def check_json_tree(value: object) -> None:
    """Bound the nesting and refuse unstorable keys or strings anywhere in a JSON value.

    Iterative on purpose: a recursive walk would itself hit the recursion limit.
    """
    pending: list[tuple[object, int, str]] = [(value, 0, "")]
    while pending:
        node, depth, where = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, str):
            problem = unstorable(node)
            if problem:
                raise ValueError(f"{where or 'value'} {problem}")
        elif isinstance(node, dict):
            for key, item in node.items():
                if isinstance(key, str) and (problem := unstorable(key)):
                    raise ValueError(f"a key in {where or 'the object'} {problem}")
                pending.append((item, depth + 1, f"{where}.{key}" if where else str(key)))
        elif isinstance(node, list | tuple):
            pending.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(node))


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
    check_json_tree(value)
    if len(json.dumps(value, separators=(",", ":"))) > MAX_JSON_BYTES:
        raise ValueError(f"must serialize to at most {MAX_JSON_BYTES} bytes of JSON")
    return value


StorableStr = Annotated[str, AfterValidator(storable_text)]
"""A string the database can store: every free-text field a request or a file can set."""
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
Ident = Annotated[StorableStr, Field(min_length=1, max_length=128)]
Text = Annotated[StorableStr, Field(max_length=4000)]


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
