"""The embedded broker under many processes: every message exactly once, nobody dies.

kombu's own filesystem transport fails this (``python -m tests.support.broker_soak
--transport kombu``: consumers die with ``JSONDecodeError`` on a half-written file).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kombu import Connection

from tests.support.broker_soak import soak
from worker.celery.embedded_broker import TRANSPORT, create_folders, transport_options


def test_many_producers_and_consumers_get_every_message_exactly_once(tmp_path: Path) -> None:
    result = soak(tmp_path, producers=4, consumers=4, messages=800)
    assert result.errors == []
    assert (result.sent, result.received, result.duplicates, result.missing) == (800, 800, 0, 0)


def test_a_corrupt_message_file_is_set_aside_not_fatal(tmp_path: Path) -> None:
    create_folders(tmp_path)
    options = transport_options(tmp_path)
    with (
        Connection("filesystem://", transport=TRANSPORT, transport_options=options) as conn,
        conn.SimpleQueue("q") as queue,
    ):
        # What an older version or a crash could leave: an empty message file.
        (Path(options["data_folder_in"]) / "000000000000001_x.q.msg").write_bytes(b"")
        queue.put({"ok": 1})
        message = queue.get(timeout=5)
        assert message.payload == {"ok": 1}
        message.ack()
    assert [p.name for p in Path(options["rejected_folder"]).iterdir()] == [
        "000000000000001_x.q.msg"
    ]


def test_connections_warn_of_no_missing_hostname(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Connection(
        "filesystem://", transport=TRANSPORT, transport_options=transport_options(tmp_path)
    ) as conn:
        conn.ensure_connection()
        conn.info()
    assert "No hostname" not in caplog.text
