"""End to end: real `celery -A worker worker` and `celery -A worker beat` deliver every
callback.* event to a receiver on 127.0.0.1 that verifies each signature with the
standardwebhooks package and fails the first attempt of every 7th event: after
deduplication by webhook-id each event arrives exactly once, and a callback's events
arrive in the order they happened."""

from __future__ import annotations

import json
import signal
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from standardwebhooks.webhooks import Webhook

from tests.support.processes import pipeline_env, processes, wait_until
from tests.support.provider import Provider
from tests.support.webhook_receiver import Hit, Receiver

pytestmark = pytest.mark.e2e
CALLBACKS = 60


def _write_callbacks(path: Path, count: int) -> None:
    """``count`` callbacks of org_w, all due (10 minutes ago), for ``callbacks schedule``."""
    past = datetime.now(UTC) - timedelta(minutes=10)
    lines = [
        json.dumps(
            {
                "organization_id": "org_w",
                "to_number": "+12015551234",
                "scheduled_at": (past + timedelta(milliseconds=i)).isoformat(),
            }
        )
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")


def test_every_event_arrives_once_in_order_despite_failures(
    pg_url: str, redis_url: str, provider: Provider, tmp_path: Path
) -> None:
    receiver = Receiver(fail_every=7).start()
    env = pipeline_env(
        pg_url, redis_url, provider, tmp_path, POLL_INTERVAL="0.5", WEBHOOK_SWEEP_INTERVAL="0.2"
    )
    _write_callbacks(tmp_path / "callbacks.jsonl", CALLBACKS)
    try:
        with processes(tmp_path, env) as procs:
            added = procs.run(
                "callbacks", "webhook", "add", "--org", "org_w", "--url", receiver.url
            )
            assert added.returncode == 0, added.stderr.decode()
            secret = json.loads(added.stdout)["secret"]
            created = procs.run("callbacks", "schedule", "--file", "callbacks.jsonl")
            assert created.returncode == 0, created.stderr.decode()
            procs.start("worker", "celery", "-A", "worker", "worker")
            procs.start("beat", "celery", "-A", "worker", "beat")

            def unique() -> int:
                return len({h.headers["webhook-id"] for h in list(receiver.hits)})

            try:
                wait_until(
                    lambda: unique() == 2 * CALLBACKS, timeout=120, what="every event delivered"
                )
            except AssertionError:
                print(procs.log("worker")[-5000:])
                raise
            for name in ("beat", "worker"):
                assert procs.stop(name) == 0, procs.log(name)[-3000:]
    finally:
        receiver.stop()

    seen: dict[str, list[str]] = defaultdict(list)
    first_of: dict[str, dict[str, object]] = {}
    for hit in receiver.hits:
        sent_at = datetime.fromtimestamp(int(hit.headers["webhook-timestamp"]), UTC)
        with freeze_time(sent_at):
            event = Webhook(secret).verify(hit.body, hit.headers)
        message_id = hit.headers["webhook-id"]
        if message_id in first_of:
            assert first_of[message_id] == event  # a retry carries the very same event
            continue
        first_of[message_id] = event
        seen[event["data"]["callback"]["id"]].append(event["type"])
    assert len(seen) == CALLBACKS
    assert all(types == ["callback.scheduled", "callback.dispatched"] for types in seen.values())
    assert len(receiver.hits) > 2 * CALLBACKS  # some were answered 500 and sent again


def _latencies(hits: list[Hit]) -> list[float]:
    """Seconds from each event's timestamp to its first arrival."""
    first: dict[str, float] = {}
    for hit in hits:
        first.setdefault(hit.headers["webhook-id"], hit.at - _event_time(hit))
    return sorted(first.values())


def _event_time(hit: Hit) -> float:
    stamp = json.loads(hit.body)["timestamp"]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_a_dead_endpoint_delays_a_healthy_one_by_nothing(
    pg_url: str, redis_url: str, provider: Provider, tmp_path: Path
) -> None:
    """A second endpoint of the same organization that hangs past WEBHOOK_TIMEOUT on every
    request: the healthy one still gets every event, about as fast as alone."""
    healthy = Receiver().start()
    hanging = Receiver(delay=30).start()
    env = pipeline_env(
        pg_url,
        redis_url,
        provider,
        tmp_path,
        POLL_INTERVAL="0.5",
        WEBHOOK_SWEEP_INTERVAL="0.2",
        WEBHOOK_TIMEOUT="20",
    )
    _write_callbacks(tmp_path / "callbacks.jsonl", CALLBACKS)
    try:
        with processes(tmp_path, env) as procs:
            for receiver in (healthy, hanging):
                added = procs.run(
                    "callbacks", "webhook", "add", "--org", "org_w", "--url", receiver.url
                )
                assert added.returncode == 0, added.stderr.decode()
            procs.start("worker", "celery", "-A", "worker", "worker")
            procs.start("beat", "celery", "-A", "worker", "beat")
            created = procs.run("callbacks", "schedule", "--file", "callbacks.jsonl")
            assert created.returncode == 0, created.stderr.decode()
            wait_until(
                lambda: len({h.headers["webhook-id"] for h in list(healthy.hits)}) == 2 * CALLBACKS,
                timeout=60,
                what="every event at the healthy endpoint",
            )
            procs.stop("beat")
            procs.stop("worker", signal.SIGKILL)
    finally:
        healthy.stop()
        hanging.stop()
    latencies = _latencies(healthy.hits)
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99) - 1]
    print(f"healthy endpoint beside a hanging one: p50 {p50:.3f} s, p99 {p99:.3f} s")
    # The hanging endpoint held only its own slots: 4 attempts at once from the worker
    # (WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT); the receiver may still hold 4 the worker gave
    # up on (it sleeps 30 s, the worker waits 20 s), so at most 8 at its end.
    assert 0 < hanging.most_in_flight <= 8
    assert len(hanging.hits) < CALLBACKS
