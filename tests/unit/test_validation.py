from datetime import UTC, datetime

import pytest

from worker.validation import InvalidCallback, NewCallback, parse_new_callbacks

GOOD = {
    "organization_id": "org_a",
    "to_number": "+12015551234",
    "scheduled_at": "2026-03-02T15:00:00Z",
}


def test_a_good_callback_parses_with_utc_time() -> None:
    (cb,) = parse_new_callbacks([("", GOOD)])
    assert cb.scheduled_at == datetime(2026, 3, 2, 15, tzinfo=UTC)
    assert cb.metadata == {}
    assert cb.pipeline_config == {}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("to_number", "2015551234", "not an E.164"),
        ("to_number", "+1 201 555 1234", "not in E.164 form"),
        ("to_number", "+15555555555", "not a valid phone number"),
        ("to_number", "call me", "not an E.164"),
        ("from_number", "+1201555", "not"),
        ("scheduled_at", "2026-03-02T15:00:00", "timezone"),
        ("scheduled_at", "tomorrow", "datetime"),
        ("metadata", ["not", "an", "object"], "dictionary"),
        ("pipeline_config", "x", "dictionary"),
        ("reason", "x" * 4001, "at most 4000"),
        ("organization_id", "", "at least 1"),
        ("colour", "blue", "Extra inputs"),
    ],
)
def test_bad_input_is_refused_with_a_message_naming_the_field(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(InvalidCallback) as err:
        parse_new_callbacks([("line 3", {**GOOD, field: value})])
    (problem,) = err.value.problems
    assert problem.startswith(f"line 3: {field}: ")
    assert message in problem


def test_every_problem_of_every_item_is_reported_at_once() -> None:
    with pytest.raises(InvalidCallback) as err:
        parse_new_callbacks(
            [("line 1", GOOD), ("line 2", {**GOOD, "to_number": "x"}), ("line 3", {})]
        )
    problems = err.value.problems
    assert any(p.startswith("line 2: to_number") for p in problems)
    assert {p.split(":")[1].strip() for p in problems if p.startswith("line 3")} == {
        "organization_id",
        "to_number",
        "scheduled_at",
    }


def test_oversized_json_object_is_refused() -> None:
    with pytest.raises(InvalidCallback, match="at most 65536 bytes"):
        parse_new_callbacks([("", {**GOOD, "metadata": {"blob": "x" * 70_000}})])


def test_offsets_are_normalised_by_comparison_not_guessed() -> None:
    cb = NewCallback.model_validate({**GOOD, "scheduled_at": "2026-03-02T10:00:00-05:00"})
    assert cb.scheduled_at == datetime(2026, 3, 2, 15, tzinfo=UTC)


def _nested(depth: int) -> dict[str, object]:
    node: dict[str, object] = {}
    for _ in range(depth):
        node = {"n": node}
    return node


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        # What PostgreSQL cannot store: NUL (text and jsonb) and lone surrogates (not UTF-8),
        # in every string field and anywhere in the two JSON objects, keys included.
        ("reason", "a\x00b", "NUL"),
        ("organization_id", "org\x00", "NUL"),
        ("agent_id", "agent\ud800", "nicode"),
        ("source_session_id", "\x00", "NUL"),
        ("instructions", "\udcff", "nicode"),
        ("metadata", {"note": "a\x00"}, "note must not contain the NUL"),
        ("metadata", {"k\x00": 1}, "a key in the object must not contain the NUL"),
        ("metadata", {"a": [{"b": ["\ud800"]}]}, "a[0].b[0] contains a character"),
        ("pipeline_config", {"voice": {"x\x00y": "v"}}, "a key in voice must not contain"),
        ("pipeline_config", {"systemPrompt": "hi\x00"}, "NUL"),
        ("metadata", _nested(1_000), "nested deeper than 32 levels"),
    ],
)
def test_text_the_database_cannot_store_is_refused_on_every_field(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(InvalidCallback) as err:
        parse_new_callbacks([("line 1", {**GOOD, field: value})])
    (problem,) = err.value.problems
    assert problem.startswith(f"line 1: {field}: ")
    assert message in problem


def test_control_characters_other_than_nul_and_moderate_nesting_are_kept() -> None:
    (cb,) = parse_new_callbacks(
        [("", {**GOOD, "reason": "tab\there", "metadata": {"deep": _nested(30)}})]
    )
    assert cb.reason == "tab\there"
