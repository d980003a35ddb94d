"""`callbacks webhook add|list|remove`."""

from __future__ import annotations

import json

import pytest

from worker.cli.main import main


@pytest.fixture
def db(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    return sqlite_url


def test_add_list_remove(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = "http://127.0.0.1:9/hooks"
    events = "callback.failed,callback.cancelled"
    assert main(["webhook", "add", "--org", "org_a", "--url", url, "--events", events]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["secret"].startswith("whsec_")
    assert added["events"] == ["callback.failed", "callback.cancelled"]
    assert main(["webhook", "list", "--org", "org_a"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in listed] == [added["id"]]
    assert "secret" not in listed[0]
    assert main(["webhook", "remove", added["id"]]) == 0
    capsys.readouterr()
    assert main(["webhook", "list", "--org", "org_a"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["webhook", "remove", added["id"]]) == 1


def test_add_refuses_a_metadata_address(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["webhook", "add", "--org", "org_a", "--url", "https://169.254.169.254/x"])
    assert code == 2
    assert "169.254.169.254" in capsys.readouterr().err
    assert main(["webhook", "add", "--org", "org_a", "--url", "https://10.0.0.1/x"]) == 2
    assert main(["webhook", "list", "--org", "org_a"]) == 0
    assert "[]" in capsys.readouterr().out
