"""The table, one callback, and actions on one, a selection and a filter."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.console.conftest import ConsoleKeys, sign_in
from tests.support.factories import T0, make_callback
from worker.db.models import Callback, CallbackEvent, ConsoleAudit
from worker.status import Status


def _status(pg_sessions: sessionmaker[Session], callback_id: str) -> str:
    with pg_sessions() as s:
        return str(s.scalar(select(Callback.status).where(Callback.id == callback_id)))


def test_table_filters_pages_and_masks(
    client: TestClient, console_keys: ConsoleKeys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        ids = [make_callback(s, org="org_a", to=f"+1201555{i:04d}").id for i in range(60)]
        failed = make_callback(s, Status.FAILED, org="org_a", failure_cause="provider said no").id
    sign_in(client, console_keys.a)
    first = client.get("/console/callbacks")
    assert first.status_code == 200
    assert first.text.count('name="ids"') == 50
    assert "+12015550059" not in first.text  # masked by default
    assert "0059" in first.text
    nxt = re.search(r'href="(/console/callbacks\?[^"]*cursor=[^"]+)" rel="next"', first.text)
    assert nxt
    second = client.get(nxt.group(1).replace("&amp;", "&"))
    assert second.text.count('name="ids"') == 11
    only_failed = client.get("/console/callbacks?status=failed")
    assert failed in only_failed.text
    assert ids[0] not in only_failed.text
    # Shareable: the filter is in every link of the page.
    assert "status=failed" in only_failed.text
    by_number = client.get("/console/callbacks?to_number=%2B12015550007")
    assert by_number.text.count('name="ids"') == 1
    unmasked = client.get("/console/callbacks?to_number=%2B12015550007&unmask=1")
    assert "+12015550007" in unmasked.text
    with pg_sessions() as s:
        rows = s.scalars(select(ConsoleAudit)).all()
        assert [r.action for r in rows] == ["unmask"]
        assert rows[0].key_id == console_keys.a_id
    bad = client.get("/console/callbacks?scheduled_after=nonsense")
    assert bad.status_code == 400
    assert "scheduled_after" in bad.text


def test_one_callback_page_and_cancel(
    client: TestClient, console_keys: ConsoleKeys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, org="org_a").id
    csrf = sign_in(client, console_keys.a)
    page = client.get(f"/console/callbacks/{cb}")
    assert page.status_code == 200
    assert "History" in page.text
    done = client.post(
        "/console/actions",
        data={"csrf": csrf, "scope": "one", "ids": cb, "action": "cancel", "reason": "asked"},
        follow_redirects=True,
    )
    assert done.status_code == 200
    assert _status(pg_sessions, cb) == "cancelled"
    with pg_sessions() as s:
        last = s.scalars(
            select(CallbackEvent).where(CallbackEvent.callback_id == cb).order_by(CallbackEvent.id)
        ).all()[-1]
    assert last.actor == f"api:{console_keys.a_id}"


def test_a_post_without_csrf_changes_nothing(
    client: TestClient, console_keys: ConsoleKeys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, org="org_a").id
    sign_in(client, console_keys.a)
    for data in (
        {"scope": "one", "ids": cb, "action": "cancel"},
        {"csrf": "forged", "scope": "one", "ids": cb, "action": "cancel"},
    ):
        refused = client.post("/console/actions", data=data, follow_redirects=False)
        assert refused.status_code == 403
    assert _status(pg_sessions, cb) == "scheduled"


def test_another_organization_sees_nothing_of_the_first(
    client: TestClient, console_keys: ConsoleKeys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, org="org_a").id
    csrf = sign_in(client, console_keys.b)
    assert cb not in client.get("/console/callbacks").text
    assert cb not in client.get("/console/callbacks?organization_id=org_a").text
    assert client.get(f"/console/callbacks/{cb}").status_code == 404
    client.post(
        "/console/actions",
        data={"csrf": csrf, "scope": "one", "ids": cb, "action": "cancel"},
    )
    client.post(
        "/console/actions",
        data={"csrf": csrf, "scope": "filter", "action": "cancel", "confirm": "yes"},
    )
    assert _status(pg_sessions, cb) == "scheduled"


def test_bulk_on_a_filter_counts_first_then_runs(
    client: TestClient, console_keys: ConsoleKeys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        due = [make_callback(s, org="org_a", to="+12015550100").id for _ in range(5)]
        make_callback(s, Status.DISPATCHED, org="org_a", to="+12015550100")
        make_callback(s, Status.CANCELLED, org="org_a", to="+12015550100")
        other = make_callback(s, org="org_a", to="+12015550999").id
    csrf = sign_in(client, console_keys.a)
    form = {"csrf": csrf, "scope": "filter", "action": "cancel", "to_number": "+12015550100"}
    preview = client.post("/console/actions", data=form)
    assert preview.status_code == 200
    assert re.search(r'id="will">5 will be cancelled', preview.text)
    assert "1: it is dispatched" in preview.text
    assert "1: already cancelled" in preview.text
    assert all(_status(pg_sessions, i) == "scheduled" for i in due)  # nothing yet
    run = client.post("/console/actions", data=form | {"confirm": "yes"})
    assert re.search(r'id="changed">5 changed', run.text)
    assert "2 not changed" in run.text
    assert all(_status(pg_sessions, i) == "cancelled" for i in due)
    assert _status(pg_sessions, other) == "scheduled"


def test_bulk_reschedule_and_dispatch_a_selection(
    client: TestClient, console_keys: ConsoleKeys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        picked = [make_callback(s, org="org_a").id for _ in range(3)]
        done = make_callback(s, Status.DISPATCHED, org="org_a").id
    csrf = sign_in(client, console_keys.a)
    new_at = (T0 + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    form: dict[str, str | list[str]] = {
        "csrf": csrf,
        "scope": "selection",
        "action": "reschedule",
        "scheduled_at": new_at,
        "confirm": "yes",
        "ids": [*picked[:2], done],
    }
    run = client.post("/console/actions", data=form)
    assert re.search(r'id="changed">2 changed', run.text)
    with pg_sessions() as s:
        moved = s.scalar(select(Callback.scheduled_at).where(Callback.id == picked[0]))
    assert moved == T0 + timedelta(days=1)
    form = {
        "csrf": csrf,
        "scope": "selection",
        "action": "dispatch",
        "confirm": "yes",
        "ids": [picked[2]],
    }
    run = client.post("/console/actions", data=form)
    assert re.search(r'id="changed">1 changed', run.text)
    assert _status(pg_sessions, picked[2]) == "dispatching"


def test_the_audit_is_for_operators(
    client: TestClient, console_keys: ConsoleKeys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, org="org_a").id
    sign_in(client, console_keys.a)
    client.get(f"/console/callbacks/{cb}?unmask=1")
    assert client.get("/console/audit").status_code == 404
    sign_in(client, console_keys.operator)
    page = client.get("/console/audit")
    assert page.status_code == 200
    assert console_keys.a_id in page.text
    assert cb in page.text
