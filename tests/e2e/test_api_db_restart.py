"""The API after its database server restarts (issue 17 item 4), on a private cluster.

A restart ends every pooled connection; the API drops those at checkout and answers the
very next requests from fresh ones. While the server is down it answers 503 with
``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import OwnDatabase
from tests.support.databases import REDIS_URL
from worker.api.app import create_app
from worker.apikeys import create_key
from worker.clock import SystemClock
from worker.db.engine import make_sessions
from worker.settings import Settings

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["threads", "loop"])
def api(
    own_db: OwnDatabase, request: pytest.FixtureRequest
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with make_sessions(own_db.engine).begin() as s:
        _, token = create_key(s, "org_a", now=SystemClock().now())
    # Sessions not passed: the app builds its own engine, as `callbacks api` does; its
    # reads run in the threadpool or on the event loop (API_READS).
    settings = Settings(database_url=own_db.url, broker_url=REDIS_URL, api_reads=request.param)
    app = create_app(settings)
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def test_first_requests_after_a_server_restart_answer_200(
    api: tuple[TestClient, dict[str, str]], own_db: OwnDatabase
) -> None:
    client, auth = api
    for _ in range(3):  # several pooled connections, all of which the restart ends
        assert client.get("/v1/callbacks", headers=auth).status_code == 200
    own_db.cluster.restart()
    statuses = [client.get("/v1/callbacks", headers=auth).status_code for _ in range(5)]
    assert statuses == [200] * 5
    assert client.get("/v1/callbacks/cb_none", headers=auth).status_code == 404


def test_database_down_is_503_with_retry_after_and_recovers(
    api: tuple[TestClient, dict[str, str]], own_db: OwnDatabase
) -> None:
    client, auth = api
    assert client.get("/v1/callbacks", headers=auth).status_code == 200
    own_db.cluster.stop()
    try:
        r = client.get("/v1/callbacks", headers=auth)
        assert r.status_code == 503
        assert r.headers["retry-after"] == "2"
        assert r.json() == {
            "error": "Database unavailable, try again",
            "code": "SERVICE_UNAVAILABLE",
        }
    finally:
        own_db.cluster.start()
    assert client.get("/v1/callbacks", headers=auth).status_code == 200
