"""The served document is the platform's published excerpt for /v1/callbacks*, verbatim."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from worker.api.openapi import document

# The package's verbatim copy of shared/spec/speko-openapi-excerpt.json (package data, so
# the check runs wherever the repository is cloned, and the app serves it installed).
EXCERPT = (
    Path(__file__).resolve().parents[3] / "worker" / "api" / "spec" / "speko-openapi-excerpt.json"
)
OPERATIONS = {
    ("/v1/callbacks", "get"): "listScheduledCallbacks",
    ("/v1/callbacks/{id}", "get"): "getScheduledCallback",
    ("/v1/callbacks/{id}/cancel", "post"): "cancelScheduledCallback",
    ("/v1/callbacks/{id}/dispatch", "post"): "dispatchScheduledCallback",
}


@pytest.fixture(scope="module")
def excerpt() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXCERPT.read_text())
    return data


def refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


def test_paths_are_the_excerpts_callback_paths_verbatim(excerpt: dict[str, Any]) -> None:
    theirs = {p: v for p, v in excerpt["paths"].items() if p.startswith("/v1/callbacks")}
    assert document()["paths"] == theirs


def test_every_component_used_is_the_excerpts_own(excerpt: dict[str, Any]) -> None:
    ours = document()
    pending, seen = refs(ours["paths"]), set()
    while pending:
        ref = pending.pop()
        seen.add(ref)
        _, _, kind, name = ref.split("/")
        assert ours["components"][kind][name] == excerpt["components"][kind][name], ref
        pending |= refs(ours["components"][kind][name]) - seen
    assert ours["components"]["securitySchemes"] == excerpt["components"]["securitySchemes"]
    assert ours["security"] == excerpt["security"] == [{"bearerAuth": []}]
    assert ours["openapi"] == excerpt["openapi"]


def test_operation_ids() -> None:
    paths = document()["paths"]
    assert {(p, m): op["operationId"] for p, ops in paths.items() for m, op in ops.items()} == (
        OPERATIONS
    )


def test_nullable_fields_are_marked() -> None:
    schema = document()["components"]["schemas"]["ScheduledCallback"]
    nullable = {name for name, prop in schema["properties"].items() if prop.get("nullable")}
    assert nullable == set(schema["properties"]) - set(schema["required"])


# --- the served document: the excerpt plus our extensions, marked (issue 16) -----------


def test_served_keeps_every_platform_operation_and_only_adds_marked_parts(
    excerpt: dict[str, Any],
) -> None:
    from worker.api.openapi import EXTENSION, served

    ours = served()
    for (path, method), op_id in OPERATIONS.items():
        theirs = excerpt["paths"][path][method]
        op = ours["paths"][path][method]
        assert op["operationId"] == op_id
        # Their parameters first, unchanged; ours after them, each marked.
        n = len(theirs.get("parameters", []))
        assert op.get("parameters", [])[:n] == theirs.get("parameters", [])
        assert all(p.items() >= EXTENSION.items() for p in op.get("parameters", [])[n:])
        for code, response in theirs["responses"].items():
            if op["responses"][code] != response:
                assert op["responses"][code].items() >= EXTENSION.items(), (path, code)
        assert {k: v for k, v in op.items() if k not in ("parameters", "responses")} == {
            k: v for k, v in theirs.items() if k not in ("parameters", "responses")
        }
    added = {
        (p, m): op["operationId"]
        for p, ops in ours["paths"].items()
        for m, op in ops.items()
        if (p, m) not in OPERATIONS
    }
    assert added == {
        ("/v1/callbacks", "post"): "createScheduledCallback",
        ("/v1/callbacks/{id}", "patch"): "updateScheduledCallback",
        # The callback webhooks (issue 15).
        ("/v1/webhooks", "get"): "listWebhookEndpoints",
        ("/v1/webhooks", "post"): "createWebhookEndpoint",
        ("/v1/webhooks/{id}", "get"): "getWebhookEndpoint",
        ("/v1/webhooks/{id}", "patch"): "updateWebhookEndpoint",
        ("/v1/webhooks/{id}", "delete"): "deleteWebhookEndpoint",
        ("/v1/webhooks/{id}/rotate-secret", "post"): "rotateWebhookSecret",
        ("/v1/webhook-deliveries", "get"): "listWebhookDeliveries",
        ("/v1/webhook-deliveries/{id}/redeliver", "post"): "redeliverWebhook",
    }
    assert all(ours["paths"][p][m].items() >= EXTENSION.items() for p, m in added)
    names = [p["name"] for p in ours["paths"]["/v1/callbacks"]["get"]["parameters"]]
    assert names == [
        "status", "source_session_id", "limit",
        "cursor", "to_number", "scheduled_after", "scheduled_before", "organization_id",
    ]  # fmt: skip


def test_served_components_are_the_excerpts_or_marked_and_every_ref_resolves(
    excerpt: dict[str, Any],
) -> None:
    from worker.api.openapi import EXTENSION, served

    ours = served()
    for kind, named in ours["components"].items():
        for name, node in named.items():
            if name in excerpt["components"].get(kind, {}):
                assert node == excerpt["components"][kind][name], (kind, name)
            else:
                assert node.items() >= EXTENSION.items(), (kind, name)
    for ref in refs(ours):
        _, _, kind, name = ref.split("/")
        assert name in ours["components"][kind], ref


def test_the_platform_document_is_still_the_excerpt_verbatim() -> None:
    from worker.api.openapi import served

    served()  # merging must not touch the cached platform document
    assert set(document()["paths"]) == {p for p, _ in OPERATIONS}
    assert "post" not in document()["paths"]["/v1/callbacks"]
