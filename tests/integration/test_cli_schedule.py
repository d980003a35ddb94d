"""`callbacks schedule`: one from flags, many from JSON lines, all or nothing."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from worker.cli.main import main
from worker.db.engine import make_engine, make_sessions
from worker.db.models import Callback

LINE = {
    "organization_id": "org_a",
    "to_number": "+12015551234",
    "scheduled_at": "2026-03-02T15:00:00Z",
}


NOW = "2026-03-02T14:00:00Z"  # before every scheduled_at below


@pytest.fixture
def db(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("CALLBACK_MAX_LATENESS", "600")
    # A callback more than its lateness in the past is refused: these fixed dates must
    # stay in the future whenever the tests run.
    with freeze_time(NOW):
        yield sqlite_url


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
        "call_outcome", "call_outcome_at",  # issue 14, additive
    }, "every ScheduledCallback field and no internal column"  # fmt: skip
    engine = make_engine(db)
    with make_sessions(engine)() as s:
        row = s.get_one(Callback, out["id"])
        assert (row.expires_at - row.scheduled_at).total_seconds() == 600  # type: ignore[operator]
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "o", "--to", "12015551234", "--at", "2026-03-02T15:00:00Z"], "--to: "),
        (["--org", "o", "--to", "+12015551234", "--at", "2026-03-02T15:00:00"], "timezone info"),
        (
            ["--org", "o", "--to", "+12015551234", "--at", "2026-03-02T15:00Z", "--metadata", "{x"],
            "--metadata: not valid JSON",
        ),
        (["--to", "+12015551234", "--at", "2026-03-02T15:00:00Z"], "--org: required"),
        (["--org", "o"], "--to, --at: required (or give --file)"),
        (["--org", "o", "--to", "+12015551234", "--at", "9999-12-31T23:00:00Z"], "--at: 9999"),
        (
            [
                "--org",
                "o",
                "--to",
                "+12015551234",
                "--at",
                "2026-03-02T15:00Z",
                "--metadata",
                '{"timezone": "Mars/Base"}',
            ],
            "--metadata: 'Mars/Base' is not an IANA time zone",
        ),
        (
            ["--org", "o", "--to", "+12015551234", "--at", "2020-01-01T09:00:00Z"],
            "--at: 2020-01-01T09:00:00+00:00 is more than its allowed lateness (10 min) in the "
            "past, so it could only be placed too late; give a time that is not that far in "
            "the past (or a larger --max-lateness)",
        ),
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


def test_file_from_standard_input_with_a_summary_on_stderr(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = "\n".join(json.dumps({**LINE, "reason": f"r{i}"}) for i in range(3))
    monkeypatch.setattr("sys.stdin", io.StringIO(lines + "\n"))
    assert main(["schedule", "--file", "-"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(x)["reason"] for x in out.splitlines()] == ["r0", "r1", "r2"]
    assert "read 3 callbacks from standard input" in err
    assert "scheduled 3 callbacks from standard input" in err
    assert "{" not in err, "JSON only on stdout"


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_an_empty_file_is_an_error_not_a_silent_success(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    f = tmp_path / "empty.jsonl"
    f.write_text(content)
    assert main(["schedule", "--file", str(f)]) == 1
    captured = capsys.readouterr()
    assert "has no callbacks" in captured.err
    assert "nothing to do" in captured.err
    assert captured.out == ""


def test_file_and_flags_together_are_refused(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text(json.dumps(LINE))
    assert main(["schedule", "--file", str(f), "--org", "o"]) == 2
    assert "not both (--org)" in capsys.readouterr().err
    assert _count(db) == 0


def _schedule_flags(*extra: str) -> list[str]:
    return ["schedule", "--org", "o", "--to", "+12015551234", "--at", "2026-03-02T15:00:00Z",
            *extra]  # fmt: skip


def test_idempotency_key_same_callback_returns_the_first(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_schedule_flags("--idempotency-key", "k1")) == 0
    first = json.loads(capsys.readouterr().out)
    # the same instant written another way is the same callback
    again = _schedule_flags("--idempotency-key", "k1")
    again[again.index("--at") + 1] = "2026-03-02T10:00:00-05:00"
    assert main(again) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["id"] == first["id"]
    assert "already scheduled with this idempotency key" in err
    assert _count(db) == 1
    # another organization has its own keys
    other = _schedule_flags("--idempotency-key", "k1")
    other[other.index("--org") + 1] = "o2"
    assert main(other) == 0
    assert json.loads(capsys.readouterr().out)["id"] != first["id"]
    assert _count(db) == 2


def test_idempotency_key_reused_for_another_callback_is_refused(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_schedule_flags("--idempotency-key", "k1")) == 0
    capsys.readouterr()
    assert main(_schedule_flags("--idempotency-key", "k1", "--reason", "other")) == 2
    err = capsys.readouterr().err
    assert "idempotency key 'k1' was already used for a different callback" in err
    assert _count(db) == 1
    # in a file: a line repeating a key with the same body is the same callback; a
    # different body fails the whole file
    f = tmp_path / "in.jsonl"
    keyed = {**LINE, "organization_id": "o", "idempotency_key": "k2"}
    f.write_text("\n".join([json.dumps(keyed), json.dumps(keyed)]))
    assert main(["schedule", "--file", str(f)]) == 0
    out, err = capsys.readouterr()
    ids = [json.loads(x)["id"] for x in out.splitlines()]
    assert len(set(ids)) == 1
    assert len(ids) == 2
    assert "scheduled 1 callbacks" in err
    assert "1 already existed" in err
    f.write_text("\n".join([json.dumps(LINE), json.dumps({**keyed, "reason": "x"})]))
    assert main(["schedule", "--file", str(f)]) == 2
    assert "line 2: idempotency key 'k2'" in capsys.readouterr().err
    assert _count(db) == 2


def test_api_key_create_refuses_an_empty_org_like_schedule(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in (["api-key", "create", "--org", ""], ["api-key", "create", "--org", "  "]):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2
        assert "argument --org: must not be empty" in capsys.readouterr().err


def test_a_big_file_reports_progress_on_stderr(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("worker.cli.commands.PROGRESS_EVERY", 3)
    f = tmp_path / "in.jsonl"
    f.write_text("\n".join(json.dumps(LINE) for _ in range(4)))
    assert main(["schedule", "--file", str(f)]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 4
    assert err.splitlines() == [
        f"callbacks: read 4 callbacks from {f}; validating",
        "callbacks: validated 4 callbacks; writing them in one transaction",
        f"callbacks: scheduled 4 callbacks from {f}",
    ]
