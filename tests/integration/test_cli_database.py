"""Issue 11, items 14 and 18: the CLI on a database that is missing, unmigrated or
unreachable says what is wrong and what to do in one line (exit 2, no traceback, no
phone number); `callbacks migrate` says truthfully what it did."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from freezegun import freeze_time

from tests.support.databases import fresh_postgres_database, sqlalchemy_url
from worker.cli.main import main
from worker.db.migrate import head_revision, upgrade

PHONE = "+12015551234"
SCHEDULE = ["schedule", "--org", "o", "--to", PHONE, "--at", "2026-03-02T15:00:00Z"]
COMMANDS = [SCHEDULE, ["status"], ["history", "cb_x"], ["api-key", "create", "--org", "o"],
            ["org-window", "show", "--org", "o"]]  # fmt: skip


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    with fresh_postgres_database("callbacks_cli") as libpq_url:
        yield sqlalchemy_url(libpq_url)


def _one_clear_line(err: str, *expected: str) -> None:
    assert err.startswith("callbacks: error: "), err
    for words in expected:
        assert words in err
    assert "Traceback" not in err
    assert "5551234" not in err, "no phone number"
    assert "INSERT" not in err
    assert "SELECT" not in err


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_before_migrate_on_postgresql(
    fresh_pg: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("DATABASE_URL", fresh_pg)
    assert main(args) == 2
    _one_clear_line(capsys.readouterr().err, "no callbacks schema yet", "callbacks migrate")


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_missing_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:  # fmt: skip
    missing = tmp_path / "nowhere" / "callbacks.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{missing}")
    assert main(args) == 2
    _one_clear_line(capsys.readouterr().err, "there is no database", "callbacks migrate")
    assert not missing.exists(), "a read does not leave an empty file behind"


def test_empty_sqlite_file_and_an_old_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "callbacks.db"
    db.touch()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    assert main(SCHEDULE) == 2
    _one_clear_line(capsys.readouterr().err, "no callbacks schema yet")
    upgrade(f"sqlite:///{db}", "0002")
    assert main(["status"]) == 2
    _one_clear_line(
        capsys.readouterr().err, f"schema is at revision 0002, this version needs {head_revision()}"
    )


@pytest.mark.parametrize("args", [*COMMANDS, ["migrate"]], ids=lambda a: a[0])
def test_unreachable_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    # Port 1: nothing listens there, the connection is refused at once.
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/x")
    assert main(args) == 2
    err = capsys.readouterr().err
    _one_clear_line(err, "cannot reach the database (PostgreSQL at 127.0.0.1:1/x)", "DATABASE_URL")
    assert "s3cret" not in err
    assert len(err.strip().splitlines()) == 1


def test_the_embedded_default_migrates_itself_in_a_fresh_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "fresh"))
    assert main(["status"]) == 0
    assert "due backlog: 0" in capsys.readouterr().out
    with freeze_time("2026-03-02T14:00:00Z"):
        assert main(SCHEDULE) == 0
    assert '"status": "scheduled"' in capsys.readouterr().out
    assert main(["history", "cb_missing"]) == 1
    assert (tmp_path / "fresh" / "callbacks.db").exists()


def test_migrate_says_what_it_did(
    fresh_pg: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_pg)
    head = head_revision()
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out == f"database schema created (revision {head})\n"
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out == (
        f"database schema was already up to date (revision {head})\n"
    )


def test_migrate_says_it_upgraded_an_old_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'callbacks.db'}"
    upgrade(url, "0002")
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out == (
        f"database schema upgraded from revision 0002 to {head_revision()}\n"
    )


def test_out_of_range_date_as_a_real_process(tmp_path: Path) -> None:
    """The issue's command, as a user runs it: one line, exit 2, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli.main", "schedule", "--org", "o", "--to", PHONE,
         "--at", "9999-12-31T23:00:00Z"],
        env={"DATA_DIR": str(tmp_path), "PATH": "/usr/bin"}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--at: 9999-12-31T23:00:00+00:00 is out of range" in done.stderr
    assert "Traceback" not in done.stderr
