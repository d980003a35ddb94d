"""API keys: made and ended by the CLI, checked by hash; the token is printed once."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import NOW
from worker.apikeys import create_key, hash_token, revoke_key, verify
from worker.cli.main import main
from worker.db.models import ApiKey


def test_verify_finds_live_keys_only(pg_sessions: sessionmaker[Session]) -> None:
    with pg_sessions.begin() as s:
        key, token = create_key(s, "org_a", now=NOW)
    with pg_sessions() as s:
        found = verify(s, token)
        assert found is not None
        assert (found.id, found.organization_id) == (key.id, "org_a")
        assert verify(s, token + "x") is None
        assert verify(s, "sk_live_") is None
        assert verify(s, "") is None
        stored = s.scalars(select(ApiKey.token_hash)).all()
        assert stored == [hash_token(token)]
        assert token not in stored
    with pg_sessions.begin() as s:
        assert revoke_key(s, key.id, now=NOW)
        assert revoke_key(s, key.id, now=NOW)
        assert not revoke_key(s, "key_missing", now=NOW)
    with pg_sessions() as s:
        assert verify(s, token) is None


def test_cli_create_prints_the_token_once_and_revoke_ends_it(
    pg_url: str,
    pg_sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_url)
    assert main(["api-key", "create", "--org", "org_cli"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert re.fullmatch(r"sk_live_[A-Za-z0-9_-]{43}", token)
    key_id = re.search(r"api key (key_\w+)", err)
    assert key_id is not None
    with pg_sessions() as s:
        key = verify(s, token)
        assert key is not None
        assert (key.id, key.organization_id) == (key_id.group(1), "org_cli")

    assert main(["api-key", "revoke", key_id.group(1)]) == 0
    with pg_sessions() as s:
        assert verify(s, token) is None
    assert main(["api-key", "revoke", "key_nope"]) == 1
    assert "no api key key_nope" in capsys.readouterr().err


def test_cli_without_a_schema_says_so(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/empty.db")
    assert main(["api-key", "create", "--org", "o"]) == 2
    assert "callbacks migrate" in capsys.readouterr().err
