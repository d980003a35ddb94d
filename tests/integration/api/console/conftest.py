"""The console against the test session's PostgreSQL (the API's fixtures, plus keys)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import NOW
from worker.apikeys import create_key


@dataclass(frozen=True)
class ConsoleKeys:
    a: str
    a_id: str
    b: str
    operator: str
    operator_id: str


@pytest.fixture
def console_keys(pg_sessions: sessionmaker[Session]) -> ConsoleKeys:
    with pg_sessions.begin() as s:
        ka, a = create_key(s, "org_a", now=NOW)
        _, b = create_key(s, "org_b", now=NOW)
        ko, op = create_key(s, None, now=NOW, operator=True)
    return ConsoleKeys(a=a, a_id=ka.id, b=b, operator=op, operator_id=ko.id)


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(client: TestClient, api_key: str) -> str:
    """Sign in as a browser would; returns the session's CSRF token."""
    page = client.get("/console/login")
    response = client.post(
        "/console/login",
        data={"api_key": api_key, "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    home = client.get("/console")
    assert home.status_code == 200
    return csrf_of(home.text)
