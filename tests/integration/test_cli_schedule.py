"""`callbacks schedule`: one from flags, many from JSON lines, all or nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from worker.cli.main import main
from worker.db.engine import make_engine, make_sessions
from worker.db.models import Callback

LINE = {
    "organization_id": "org_a",
    "to_number": "+12015551234",
    "scheduled_at": "2026-03-02T15:00:00Z",
}


@pytest.fixture
def db(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("CALLBACK_MAX_LATENESS", "600")
    return sqlite_url


def _count(url: str) -> int:
    engine = make_engine(url)
    with make_sessions(engine)() as s:
        n = s.scalar(select(func.count()).select_from(Callback)) or 0
    engine.dispose()
    return n


def test_one_from_flags_prints_it_in_the_api_shape(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "schedule",
            "--org", "org_a",
            "--to", "+12015551234",
            "--at", "2026-03-02T10:00:00-05:00",
            "--agent", "agent_1",
            "--metadata", '{"crm": 7}',
            "--pipeline-config", '{"voice": "v"}',
        ]
    )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["id"].startswith("cb_")
    assert out["scheduled_at"] == "2026-03-02T15:00:00Z"
    assert out["status"] == "scheduled"
    assert out["metadata"] == {"crm": 7}
    assert out["pipeline_config"] == {"voice": "v"}
    assert out["failure_cause"] is None
    assert set(out) == {
        "id", "organization_id", "source_session_id", "created_session_id", "agent_id",
        "phone_number_id", "to_number", "from_number", "scheduled_at", "status", "reason",
        "instructions", "summary", "pipeline_config", "metadata", "failure_cause",
        "attempted_at", "dispatched_at", "cancelled_at", "created_at", "updated_at",
    }, "every ScheduledCallback field and no internal column"  # fmt: skip
    engine = make_engine(db)
    with make_sessions(engine)() as s:
        row = s.get_one(Callback, out["id"])
        assert (row.expires_at - row.scheduled_at).total_seconds() == 600  # type: ignore[operator]
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "o", "--to", "12015551234", "--at", "2026-03-02T15:00:00Z"], "to_number"),
        (["--org", "o", "--to", "+12015551234", "--at", "2026-03-02T15:00:00"], "timezone info"),
        (
            ["--org", "o", "--to", "+12015551234", "--at", "2026-03-02T15:00Z", "--metadata", "{x"],
            "--metadata: not valid JSON",
        ),
        (["--to", "+12015551234", "--at", "2026-03-02T15:00:00Z"], "organization_id"),
    ],
)
def test_bad_flags_are_refused_clearly_and_nothing_is_created(
    db: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["schedule", *args]) == 2
    err = capsys.readouterr().err
    assert "nothing was scheduled" in err
    assert message in err
    assert "Traceback" not in err
    assert _count(db) == 0


def test_file_is_all_or_nothing_with_every_bad_line_named(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text(
        "\n".join(
            [
                json.dumps(LINE),
                json.dumps({**LINE, "to_number": "555"}),
                "",
                "{not json",
                json.dumps({**LINE, "scheduled_at": "2026-03-02T15:00:00"}),
            ]
        )
    )
    assert main(["schedule", "--file", str(f)]) == 2
    err = capsys.readouterr().err
    assert "line 4: not valid JSON" in err
    assert _count(db) == 0
    f.write_text(
        "\n".join(
            [
                json.dumps(LINE),
                json.dumps({**LINE, "to_number": "555"}),
                json.dumps({**LINE, "scheduled_at": "2026-03-02T15:00:00"}),
            ]
        )
    )
    assert main(["schedule", "--file", str(f)]) == 2
    err = capsys.readouterr().err
    assert "line 2: to_number" in err
    assert "line 3: scheduled_at" in err
    assert _count(db) == 0


def test_file_creates_one_per_line_in_order(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text("\n".join(json.dumps({**LINE, "reason": f"r{i}"}) for i in range(5)) + "\n")
    assert main(["schedule", "--file", str(f)]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["reason"] for p in printed] == [f"r{i}" for i in range(5)]
    assert _count(db) == 5
