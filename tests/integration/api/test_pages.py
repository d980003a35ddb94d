"""``GET /v1/callbacks`` cursor pages and the console's filters (issue 16, item 1)."""

from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import NOW, Keys, bearer
from tests.support.factories import T0, make_callback
from worker.creation import schedule
from worker.status import Status
from worker.validation import NewCallback


@pytest.fixture(params=["threads", "loop"])
def api_reads(request: pytest.FixtureRequest) -> str:
    """Every read here, with the reads in the threadpool and on the event loop."""
    return str(request.param)


def _seed(sessions: sessionmaker[Session], n: int, org: str = "org_a") -> list[str]:
    with sessions.begin() as s:
        return [
            make_callback(s, org=org, created_at=NOW - timedelta(seconds=n - i)).id
            for i in range(n)
        ]


def _walk(client: TestClient, token: str, query: str = "", limit: int = 3) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        url = f"/v1/callbacks?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        r = client.get(url, headers=bearer(token))
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [c["id"] for c in body["callbacks"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


def test_pages_walk_every_row_once_newest_first_and_the_last_page_says_so(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    ids = _seed(pg_sessions, 10)
    _seed(pg_sessions, 4, org="org_b")
    assert _walk(client, keys.a) == list(reversed(ids))
    whole = client.get("/v1/callbacks?limit=100", headers=bearer(keys.a)).json()
    assert whole["next_cursor"] is None
    assert len(whole["callbacks"]) == 10


def test_rows_with_the_same_created_at_are_split_by_id_without_loss(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        ids = [make_callback(s, created_at=NOW).id for _ in range(7)]
    assert sorted(_walk(client, keys.a, limit=2)) == sorted(ids)
    assert len(_walk(client, keys.a, limit=2)) == 7


def test_inserts_from_another_thread_between_pages_skip_and_repeat_nothing(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    ids = _seed(pg_sessions, 12)
    seen: list[str] = []
    cursor = None
    step = 0
    while True:
        # Another thread inserts newer rows (as the API or the pipeline would) before
        # every page: none of them may shift the pages still to come.
        def insert(step: int = step) -> None:
            with pg_sessions.begin() as s:
                schedule(
                    s,
                    [
                        NewCallback(
                            organization_id="org_a", to_number="+12015551234", scheduled_at=T0
                        )
                    ]
                    * 2,
                    now=NOW + timedelta(minutes=step + 1),
                    actor="test",
                )

        t = threading.Thread(target=insert)
        t.start()
        t.join()
        step += 1
        url = "/v1/callbacks?limit=5" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=bearer(keys.a)).json()
        seen += [c["id"] for c in body["callbacks"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    original = [i for i in seen if i in set(ids)]
    assert original == list(reversed(ids))
    assert len(seen) == len(set(seen))


def test_filters_apply_and_cursors_keep_them(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        mine = [
            make_callback(
                s,
                to="+12015550100",
                scheduled_at=T0 + timedelta(hours=i),
                created_at=NOW - timedelta(minutes=10 - i),
            ).id
            for i in range(6)
        ]
        make_callback(s, to="+12015550199", created_at=NOW)
        make_callback(s, Status.CANCELLED, to="+12015550100", created_at=NOW)
    got = _walk(client, keys.a, "&to_number=%2B12015550100&status=scheduled", limit=2)
    assert got == list(reversed(mine))
    # Unencoded '+' arrives as a space: read back as the '+' it was.
    got = _walk(client, keys.a, "&to_number=+12015550100&status=scheduled", limit=4)
    assert got == list(reversed(mine))
    after = (T0 + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    before = (T0 + timedelta(hours=4)).isoformat()  # "+00:00", sent unencoded
    got = _walk(
        client,
        keys.a,
        f"&scheduled_after={after}&scheduled_before={before}&status=scheduled",
        limit=2,
    )
    assert got == list(reversed(mine[1:4]))


@pytest.mark.parametrize(
    "query",
    [
        "to_number=12015550100",
        "to_number=%2B1201",
        "to_number=%2B1%20201%20555%200100",
        "scheduled_after=2026-03-02T12:00:00",
        "scheduled_before=2026-03-02",
        "scheduled_after=1700000000",
        "scheduled_after=2026-03-02T12:00:00Z&scheduled_before=2026-03-01T12:00:00Z",
        "scheduled_after=0001-01-01T00:00:00%2B05:00",
        "cursor=garbage",
        "cursor=" + "A" * 600,
        "cursor=%00",
        "cursor=" + base64.urlsafe_b64encode(b"[1, 2, 3, 4]").decode(),
        "cursor=" + base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        "cursor=" + base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_bad_filters_and_cursors_are_400_envelopes(
    client: TestClient, keys: Keys, query: str
) -> None:
    r = client.get(f"/v1/callbacks?{query}", headers=bearer(keys.a))
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "VALIDATION_ERROR"


def _forge(cursor: str, **changes: object) -> str:
    raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    if "at" in changes:
        raw[1] = changes["at"]
    if "id" in changes:
        raw[2] = changes["id"]
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def test_a_cursor_is_refused_when_edited_with_other_filters_or_by_another_org(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    _seed(pg_sessions, 5)
    _seed(pg_sessions, 5, org="org_b")
    cursor = client.get("/v1/callbacks?limit=2", headers=bearer(keys.a)).json()["next_cursor"]
    assert cursor
    for url, token in [
        (f"/v1/callbacks?limit=2&cursor={_forge(cursor, at='2099-01-01T00:00:00+00:00')}", keys.a),
        (f"/v1/callbacks?limit=2&cursor={_forge(cursor, id='cb_other')}", keys.a),
        (f"/v1/callbacks?limit=2&status=scheduled&cursor={cursor}", keys.a),
        (f"/v1/callbacks?limit=2&cursor={cursor}", keys.b),
    ]:
        r = client.get(url, headers=bearer(token))
        assert r.status_code == 400, (url, r.text)
        assert r.json()["code"] == "VALIDATION_ERROR"
    ok = client.get(f"/v1/callbacks?limit=2&cursor={cursor}", headers=bearer(keys.a))
    assert ok.status_code == 200
    assert len(ok.json()["callbacks"]) == 2
