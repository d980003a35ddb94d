"""Text PostgreSQL cannot store (NUL, lone surrogates) is refused on every path that
writes it — the API, the CLI's flags and files, the pipeline's Celery task — with a
message naming the field, and nothing is written. On PostgreSQL: SQLite stores NUL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import Keys, bearer
from tests.support.factories import make_callback
from worker.celery.app import create_celery
from worker.cli.main import main
from worker.db.models import Callback, CallbackEvent
from worker.settings import Settings
from worker.status import Status
from worker.validation import InvalidCallback

GOOD = {
    "organization_id": "org_a",
    "to_number": "+12015551234",
    "scheduled_at": "2026-03-02T15:00:00Z",
}


def _rows(sessions: sessionmaker[Session]) -> tuple[int, int]:
    with sessions() as s:
        callbacks = s.scalar(select(func.count()).select_from(Callback)) or 0
        events = s.scalar(select(func.count()).select_from(CallbackEvent)) or 0
    return callbacks, events


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"reason": "asked\\u0000 not to"}', "reason: must not contain the NUL"),
        ('{"reason": "\\ud800"}', "reason: "),
    ],
)
def test_api_cancel_reason_that_cannot_be_stored_is_400_and_changes_nothing(
    client: TestClient,
    keys: Keys,
    pg_sessions: sessionmaker[Session],
    body: str,
    message: str,
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s)
    before = _rows(pg_sessions)
    r = client.post(
        f"/v1/callbacks/{cb.id}/cancel",
        content=body,
        headers={**bearer(keys.a), "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "VALIDATION_ERROR"
    assert message in r.json()["error"]
    assert _rows(pg_sessions) == before
    with pg_sessions() as s:
        assert s.get_one(Callback, cb.id).status is Status.SCHEDULED


@pytest.fixture
def pg_env(pg_url: str, pg_sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", pg_url)
    return pg_url


@pytest.mark.parametrize(
    "flags",
    [
        # A JSON escape is plain ASCII on a command line: the realistic way in.
        ["--metadata", '{"note": "a\\u0000b"}'],
        ["--pipeline-config", '{"voice": {"k\\u0000": 1}}'],
        # A byte that is not UTF-8 in argv reaches Python as a lone surrogate.
        ["--reason", "caller \udcff"],
    ],
)
def test_cli_schedule_flags_that_cannot_be_stored_are_refused(
    pg_env: str,
    pg_sessions: sessionmaker[Session],
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
) -> None:
    at = "2026-03-02T15:00:00Z"
    code = main(["schedule", "--org", "org_a", "--to", "+12015551234", "--at", at, *flags])
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    assert "NUL" in err or "nicode" in err
    assert _rows(pg_sessions) == (0, 0)


def test_cli_schedule_file_with_nul_is_refused_all_or_nothing(
    pg_env: str,
    pg_sessions: sessionmaker[Session],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = [GOOD, {**GOOD, "metadata": {"crm": {"id": "7\u0000"}}}]
    path = tmp_path / "callbacks.jsonl"
    # json.dumps writes the NUL as the escape \u0000, as any JSON-lines producer would.
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    code = main(["schedule", "--file", str(path)])
    err = capsys.readouterr().err
    assert code != 0
    assert "line 2" in err
    assert "metadata" in err
    assert "NUL" in err
    assert _rows(pg_sessions) == (0, 0)


@pytest.mark.parametrize(
    "bad",
    [
        {**GOOD, "summary": "a\x00"},
        {**GOOD, "metadata": {"k\x00": "v"}},
        {**GOOD, "pipeline_config": {"firstMessage": ["ok", "\x00"]}},
    ],
)
def test_schedule_task_refuses_unstorable_text_and_writes_nothing(
    pg_url: str,
    pg_sessions: sessionmaker[Session],
    redis_url: str,
    bad: dict[str, Any],
) -> None:
    app = create_celery(Settings(database_url=pg_url, broker_url=redis_url, dialer="log"))
    try:
        result = app.tasks["callbacks.schedule"].apply(args=([GOOD, bad],))
        assert isinstance(result.result, InvalidCallback)
        assert "callback 1:" in str(result.result)
        assert "NUL" in str(result.result)
    finally:
        app.runtime.close()
    assert _rows(pg_sessions) == (0, 0)
