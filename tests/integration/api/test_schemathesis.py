"""Schema-driven fuzzing of the app against the OpenAPI document it serves itself.

Both generation modes (valid and invalid requests). Checks: no 5xx, and every response
conforms (schema, content type, headers). The
excerpt documents only 200 and 401, so "undocumented status code" is replaced by our own
rule: every non-2xx answer is the ``{error, code}`` envelope. Half the generated ids are
swapped for real callbacks in every status, so cancel and dispatch reach their
transitions and conflicts, not only 404s. Bounded: a few dozen examples per operation.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, status_code_conformance
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import Keys, bearer
from tests.support.factories import make_callback
from worker.status import Status
from worker.validation import unstorable


@pytest.fixture
def seeded(pg_sessions: sessionmaker[Session]) -> list[str]:
    with pg_sessions.begin() as s:
        return [
            make_callback(s, status, source_session_id=f"sess_{i}", metadata={"i": i}).id
            for i, status in enumerate([*Status, *Status])
        ]


@schemathesis.check
def error_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code < 300:
        return None
    body = response.json()
    assert isinstance(body, dict), body
    assert set(body) == {"error", "code"}, body
    assert all(isinstance(v, str) and v for v in body.values()), body
    if response.status_code == 401:
        assert body == {"error": "Unauthorized", "code": "UNAUTHORIZED"}
        assert response.headers.get("www-authenticate") == ["Bearer"]
    return None


EXTENSION_PARAMS = {"cursor", "to_number", "scheduled_after", "scheduled_before"}
EXTENSION_OPERATIONS = {("/v1/callbacks", "POST"), ("/v1/callbacks/{id}", "PATCH")}
WEBHOOK_URL_OPERATIONS = {("/v1/webhooks", "POST"), ("/v1/webhooks/{id}", "PATCH")}


def _beyond_the_schema(case: Any) -> list[Any]:
    """Our extensions (issue 16) validate what a schema cannot say: a cursor we made, a
    number that exists, a date within range, a time not past its lateness. Schema-valid
    values outside those are 400 by design (each has its own test in test_pages.py and
    test_create_and_edit.py), so "valid data accepted" is not checked there; no 5xx and
    the envelope still are."""
    query = set(case.query or {})
    extension = (case.operation.path, case.method.upper()) in EXTENSION_OPERATIONS
    return [positive_data_acceptance] if extension or query & EXTENSION_PARAMS else []


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_own_openapi(
    app: FastAPI, keys: Keys, seeded: list[str], mode: GenerationMode
) -> None:
    # Driven by hand, not with schemathesis' pytest plugin (its lazy fixture loader does
    # not run on pytest 9): one Hypothesis run per operation.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        # Creating or changing a webhook endpoint resolves its URL's host (the SSRF guard):
        # generated host names would send DNS queries off this machine, which no test
        # does. Their validation has its own tests (tests/integration/api/test_webhooks.py).
        if (operation.path, operation.method.upper()) not in WEBHOOK_URL_OPERATIONS:
            operations.append(operation)
    # The platform's four, our two callback extensions (POST create, PATCH edit), and the
    # webhooks' six that take no URL.
    assert len(operations) == 12

    excluded = [status_code_conformance]
    if mode is GenerationMode.NEGATIVE:
        # Unknown query parameters are ignored on purpose (forward-compatible clients),
        # which this check counts as accepting invalid input. Each invalid input the
        # contract names (limit, status, body) has its own 400 test in test_read/test_actions.
        excluded.append(negative_data_rejection)
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def run(case: Any) -> None:
            params = case.path_parameters
            body = case.body
            if mode is GenerationMode.POSITIVE and isinstance(body, dict):
                reason = body.get("reason")
                if isinstance(reason, str) and unstorable(reason):
                    # Valid by the schema, refused by design: the database cannot store
                    # it (400, tests/integration/api/test_unstorable_text.py).
                    body["reason"] = reason.encode("utf-8", "replace").decode().replace("\x00", "")
            if params and len(str(params.get("id", ""))) % 2 == 0:
                params["id"] = seeded[len(str(params)) % len(seeded)]
            case.call_and_validate(
                headers=bearer(keys.a),
                excluded_checks=[*excluded, *_beyond_the_schema(case)],
                additional_checks=[error_envelope],
            )

        run()
