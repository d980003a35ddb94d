"""Organization settings: view, edit with validation, only one's own organization."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.console.conftest import ConsoleKeys, sign_in
from worker.db.models import ConsoleAudit, OrgConfig


def test_edit_with_validation(
    client: TestClient, console_keys: ConsoleKeys, pg_sessions: sessionmaker[Session]
) -> None:
    csrf = sign_in(client, console_keys.a)
    assert client.get("/console/orgs", follow_redirects=False).headers["location"] == (
        "/console/orgs/org_a"
    )
    bad = client.post(
        "/console/orgs/org_a",
        data={
            "csrf": csrf,
            "window_start": "22:00",
            "window_end": "02:00",
            "max_concurrent": "-1",
            "redial_on": "never",
            "timezone": "Mars/Base",
        },
    )
    assert bad.status_code == 400
    for problem in ("crosses midnight", "max_concurrent", "redial on never", "Mars/Base"):
        assert problem in bad.text
    with pg_sessions() as s:
        assert s.get(OrgConfig, "org_a") is None
    good = client.post(
        "/console/orgs/org_a",
        data={
            "csrf": csrf,
            "window_start": "09:00",
            "window_end": "17:00",
            "window_days": "mon-fri",
            "max_dials_per_minute": "30",
            "redial_max": "2",
            "redial_on": "busy,no_answer",
            "redial_intervals": "10m, 1h",
        },
    )
    assert good.status_code == 200
    assert "Saved." in good.text
    assert "09:00-17:00" in good.text
    with pg_sessions() as s:
        row = s.get(OrgConfig, "org_a")
        assert row is not None
        assert (row.window_start, row.window_end, row.max_dials_per_minute) == (540, 1020, 30)
        assert row.redial_intervals == "10m,1h"
        assert row.max_concurrent is None
        audit = s.query(ConsoleAudit).one()
        assert audit.action == "org_settings"


def test_another_organizations_settings_are_not_there(
    client: TestClient, console_keys: ConsoleKeys, pg_sessions: sessionmaker[Session]
) -> None:
    csrf = sign_in(client, console_keys.b)
    assert client.get("/console/orgs/org_a").status_code == 404
    refused = client.post("/console/orgs/org_a", data={"csrf": csrf, "max_concurrent": "1"})
    assert refused.status_code == 404
    no_token = client.post("/console/orgs/org_b", data={"max_concurrent": "1"})
    assert no_token.status_code == 403
    with pg_sessions() as s:
        assert s.query(OrgConfig).count() == 0


def test_an_operator_edits_any_organization(
    client: TestClient, console_keys: ConsoleKeys, pg_sessions: sessionmaker[Session]
) -> None:
    csrf = sign_in(client, console_keys.operator)
    done = client.post("/console/orgs/org_b", data={"csrf": csrf, "max_concurrent": "3"})
    assert done.status_code == 200
    listed = client.get("/console/orgs")
    assert "org_b" in listed.text
