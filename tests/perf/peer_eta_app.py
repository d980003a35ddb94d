"""Peer: the naive Celery approach, one ``apply_async(eta=scheduled_at)`` per callback.

Same broker, same worker settings as ``celery -A worker worker`` (pool, concurrency,
prefetch, acks), the same urllib3 dialer; the task dials and marks the row dispatched
with one UPDATE. No claim, no lease, no history: what the design replaces.

    celery -A tests.perf.peer_eta_app worker
"""

from __future__ import annotations

import threading

from celery import Celery
from sqlalchemy import Engine, text

from worker.celery.config import celery_config
from worker.db.engine import make_engine
from worker.dialer.port import DialRequest, OutcomeKind
from worker.dialer.speko import SpekoDialer
from worker.settings import load_settings

settings = load_settings()
app = Celery("perf_eta")
app.config_from_object(celery_config(settings))
_lock = threading.Lock()
_parts: list[tuple[SpekoDialer, Engine]] = []


def parts() -> tuple[SpekoDialer, Engine]:
    with _lock:
        if not _parts:
            dialer = SpekoDialer(
                str(settings.speko_api_url),
                settings.speko_api_key or "",
                connect_timeout=settings.dialer_connect_timeout,
                read_timeout=settings.dialer_read_timeout,
                pool_size=settings.dialer_pool_size or settings.effective_concurrency,
            )
            # Threads wait for a connection past this; PostgreSQL allows ~100 in all.
            engine = make_engine(
                settings.effective_database_url,
                pool_size=min(settings.effective_concurrency + 2, 20),
            )
            _parts.append((dialer, engine))
        return _parts[0]


@app.task(name="perf.eta_dial")
def eta_dial(callback_id: str, to: str) -> None:
    dialer, engine = parts()
    body = {"to": to, "agentId": "agent_1", "metadata": {"callback_id": callback_id}}
    outcome = dialer.dial(DialRequest(callback_id, f"{callback_id}.1", body))
    if outcome.kind is not OutcomeKind.PLACED:
        raise RuntimeError(outcome.cause)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE callbacks SET status = 'dispatched', dispatched_at = now(), "
                "created_session_id = :sid WHERE id = :id"
            ),
            {"sid": outcome.session_id, "id": callback_id},
        )
