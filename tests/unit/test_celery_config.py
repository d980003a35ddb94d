"""The Celery configuration of issue 13: operators' dispatches have their own queue."""

from __future__ import annotations

from pathlib import Path

from worker.celery.config import DISPATCH_QUEUE, MANUAL_QUEUE, celery_config
from worker.settings import Settings


def test_manual_dispatches_have_their_own_queue_that_the_bare_worker_consumes(
    tmp_path: Path,
) -> None:
    config = celery_config(Settings(data_dir=tmp_path))
    assert config["task_routes"]["callbacks.dispatch"] == {"queue": MANUAL_QUEUE}
    assert {DISPATCH_QUEUE, MANUAL_QUEUE} <= {q.name for q in config["task_queues"]}
    assert config["task_default_queue"] == DISPATCH_QUEUE  # the poller's batches


def test_the_claim_window_defaults_to_a_message_per_worker_thread(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="postgresql+psycopg://h/db")
    assert settings.effective_claim_window == 16 * 50
    assert Settings(data_dir=tmp_path).effective_claim_window == 4 * 50  # embedded: 4 threads
    assert Settings(data_dir=tmp_path, claim_window=300).effective_claim_window == 300
