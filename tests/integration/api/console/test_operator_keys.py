"""Operator keys on /v1/callbacks: every organization, narrowed by organization_id."""

from __future__ import annotations

import os
import subprocess

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import bearer
from tests.integration.api.console.conftest import ConsoleKeys
from tests.support.factories import make_callback


def _seed(pg_sessions: sessionmaker[Session]) -> tuple[str, str]:
    with pg_sessions.begin() as s:
        a = make_callback(s, org="org_a")
        b = make_callback(s, org="org_b")
        return a.id, b.id


def test_operator_lists_every_organization_and_filters(
    client: TestClient, console_keys: ConsoleKeys, pg_sessions: sessionmaker[Session]
) -> None:
    a, b = _seed(pg_sessions)
    op = bearer(console_keys.operator)
    every = client.get("/v1/callbacks", headers=op).json()
    assert {c["id"] for c in every["callbacks"]} == {a, b}
    only_b = client.get("/v1/callbacks?organization_id=org_b", headers=op).json()
    assert [c["id"] for c in only_b["callbacks"]] == [b]
    page1 = client.get("/v1/callbacks?limit=1", headers=op).json()
    page2 = client.get(f"/v1/callbacks?limit=1&cursor={page1['next_cursor']}", headers=op).json()
    assert {page1["callbacks"][0]["id"], page2["callbacks"][0]["id"]} == {a, b}
    assert page2["next_cursor"] is None


def test_operator_reads_and_cancels_in_any_organization(
    client: TestClient, console_keys: ConsoleKeys, pg_sessions: sessionmaker[Session]
) -> None:
    _, b = _seed(pg_sessions)
    op = bearer(console_keys.operator)
    assert client.get(f"/v1/callbacks/{b}", headers=op).json()["organization_id"] == "org_b"
    done = client.post(f"/v1/callbacks/{b}/cancel", headers=op, json={})
    assert done.status_code == 200
    assert done.json()["status"] == "cancelled"
    assert client.get("/v1/callbacks/cb_missing", headers=op).status_code == 404


def test_an_organizations_key_cannot_widen_with_organization_id(
    client: TestClient, console_keys: ConsoleKeys, pg_sessions: sessionmaker[Session]
) -> None:
    a, b = _seed(pg_sessions)
    key_a = bearer(console_keys.a)
    other = client.get("/v1/callbacks?organization_id=org_b", headers=key_a).json()
    assert other["callbacks"] == []
    own = client.get("/v1/callbacks?organization_id=org_a", headers=key_a).json()
    assert [c["id"] for c in own["callbacks"]] == [a]
    assert client.get(f"/v1/callbacks/{b}", headers=key_a).status_code == 404


def test_cli_makes_an_operator_key(pg_url: str) -> None:
    done = subprocess.run(
        ["callbacks", "api-key", "create", "--operator"],
        env={**os.environ, "DATABASE_URL": pg_url},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("sk_live_")
    assert "every organization (operator)" in done.stderr
    both = subprocess.run(
        ["callbacks", "api-key", "create", "--operator", "--org", "x"],
        env={**os.environ, "DATABASE_URL": pg_url},
        capture_output=True,
        text=True,
    )
    assert both.returncode == 2
