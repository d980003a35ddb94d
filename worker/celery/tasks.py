"""Celery tasks: thin adapters from a message to one domain function."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from celery import Celery

from worker.creation import schedule
from worker.dialer.calls import SpekoCalls
from worker.dispatch import dispatch, dispatch_many
from worker.outcome_pull import PullPolicy, pull_outcomes
from worker.platform_events.process import process, sweep
from worker.platform_events.retention import purge_processed
from worker.poller import poll
from worker.reaper import reap
from worker.runtime import Runtime
from worker.validation import InvalidCallback, parse_new_callbacks
from worker.webhooks import jobs as webhook_jobs

log = logging.getLogger(__name__)


def register(app: Celery, runtime: Callable[[], Runtime]) -> None:
    """Define the tasks on ``app``; ``runtime`` hands out the process's parts (built on
    first use, after a prefork child has forked)."""

    @app.task(name="callbacks.dispatch_claimed", shared=False)
    def dispatch_claimed(callback_ids: str | list[str]) -> dict[str, str]:
        """Internal: a list of claimed callbacks to dial (the poller's batch, the API's one).

        A bare id is the API's message of the previous release: still accepted for this
        release, so messages queued across an upgrade are dialed; to be removed after it.
        """
        ids = [callback_ids] if isinstance(callback_ids, str) else callback_ids
        rt = runtime()
        results = dispatch_many(rt.dispatcher, ids)
        top_up(rt)
        return {callback_id: result.value for callback_id, result in results.items()}

    def top_up(rt: Runtime) -> None:
        """Refill the claim window as a batch ends (worker.backpressure): the window keeps
        the queue short, and this keeps it from running dry between beat's ticks."""
        try:
            poll(
                rt.sessions,
                rt.clock,
                publish,
                limits=rt.limits,
                policy=rt.dispatcher.policy,
                top_up=True,
            )
        except Exception:  # the batch is done and recorded; beat's next tick claims instead
            log.exception("could not top up the claim window")

    def publish(ids: Sequence[str]) -> None:
        # A message per batch, not per callback: Celery's own cost per task is the floor
        # of a one-message-per-callback design (tests/perf). One producer for them all.
        size = runtime().settings.dispatch_batch_size
        with app.producer_or_acquire() as producer:
            for start in range(0, len(ids), size):
                batch = list(ids[start : start + size])
                dispatch_claimed.apply_async((batch,), producer=producer)

    @app.task(name="callbacks.poll", shared=False)
    def poll_due() -> int:
        rt = runtime()
        return poll(rt.sessions, rt.clock, publish, limits=rt.limits, policy=rt.dispatcher.policy)

    @app.task(name="callbacks.reap", shared=False)
    def reap_stuck() -> dict[str, int]:
        rt = runtime()
        result = reap(rt.sessions, rt.clock, publish, rt.dispatcher.policy)
        return {what: len(ids) for what, ids in vars(result).items()}

    @app.task(name="callbacks.dispatch", shared=False)
    def dispatch_now(callback_id: str, override_window: bool = False) -> str:
        """Contract: dispatch now if scheduled (any scheduled_at) or already claimed.

        Outside the callee's calling window it is deferred unless ``override_window``
        (``--kwargs '{"override_window": true}'``). A failed callback is never dialed
        again here (``skipped``, logged with where an operator's retry goes): whether its
        outcome is unknown, and so needs a confirmed ``force``, is the API's question.
        """
        return dispatch(
            runtime().dispatcher,
            callback_id,
            manual=True,
            actor="manual",
            override_window=override_window,
        ).value

    @app.task(name="callbacks.schedule", shared=False)
    def schedule_callbacks(callbacks: dict[str, Any] | list[dict[str, Any]]) -> list[str]:
        """For the analysis pipeline: one callback (object) or several (list), all or nothing."""
        items = callbacks if isinstance(callbacks, list) else [callbacks]
        rt = runtime()
        try:
            new = parse_new_callbacks((f"callback {i}", raw) for i, raw in enumerate(items))
        except InvalidCallback as exc:
            # Bad input will not get better on retry: say why and drop it.
            log.error("callbacks.schedule refused: %s", exc)
            raise
        with rt.sessions.begin() as session:
            created = schedule(
                session, new, now=rt.clock.now(), actor="pipeline", lateness=rt.settings.lateness
            )
        log.info("scheduled %d callbacks: %s", len(created), ", ".join(c.id for c in created))
        return [c.id for c in created]

    # --- platform events in (issue 14) ---

    @app.task(name="callbacks.process_platform_event", shared=False)
    def process_platform_event(webhook_id: str) -> str | None:
        """Internal: do what a stored platform event asks (once; a repeat is a no-op)."""
        rt = runtime()
        handled = process(
            rt.sessions,
            rt.clock,
            webhook_id,
            lateness=rt.settings.lateness,
            redials=rt.settings.redial_defaults,
        )
        return None if handled is None else handled.result.value

    @app.task(name="callbacks.sweep_platform_events", shared=False)
    def sweep_platform_events() -> int:
        """Internal (beat): events stored but never processed (their task was lost)."""
        rt = runtime()
        return sweep(
            rt.sessions,
            rt.clock,
            lateness=rt.settings.lateness,
            redials=rt.settings.redial_defaults,
        )

    @app.task(name="callbacks.purge_platform_events", shared=False)
    def purge_platform_events() -> int:
        """Internal (beat, hourly): processed events older than PLATFORM_EVENT_RETENTION."""
        rt = runtime()
        retention = timedelta(seconds=rt.settings.platform_event_retention)
        return purge_processed(rt.sessions, rt.clock, retention=retention)

    # --- the outcome of calls placed, pulled when no event decided it (issue 14) ---

    readers: list[SpekoCalls] = []

    @app.task(name="callbacks.pull_outcomes", shared=False)
    def pull_call_outcomes() -> dict[str, int]:
        """Internal (beat): read calls with no outcome OUTCOME_PULL_AFTER after dispatch."""
        rt = runtime()
        settings = rt.settings
        if settings.speko_api_url is None or not settings.speko_api_key:
            return {}  # no platform (log-only dialer): no call to read back
        if not readers:
            readers.append(
                SpekoCalls(
                    str(settings.speko_api_url),
                    settings.speko_api_key,
                    connect_timeout=settings.dialer_connect_timeout,
                    read_timeout=settings.dialer_read_timeout,
                )
            )
        policy = PullPolicy(
            timedelta(seconds=settings.outcome_pull_after),
            timedelta(seconds=settings.outcome_give_up_after),
            redials=settings.redial_defaults,
            lateness=settings.lateness,
        )
        return pull_outcomes(rt.sessions, rt.clock, readers[0].read, policy)

    # --- callback webhooks out (issue 15) ---

    def webhook_lease(rt: Runtime) -> timedelta:
        # Longer than a delivery task (two attempts' timeouts) plus its wait in the queue:
        # a delivery is handed out again only when its worker surely stopped.
        return timedelta(seconds=rt.settings.webhook_timeout * 2 + 60)

    @app.task(name="callbacks.webhooks_deliver", shared=False)
    def webhooks_deliver(delivery_id: str) -> int:
        """Internal: a webhook delivery handed out by the sweep (and the endpoint's next)."""
        rt = runtime()
        return webhook_jobs.deliver(
            rt.sessions,
            rt.clock,
            delivery_id,
            timeout=rt.settings.webhook_timeout,
            lease=webhook_lease(rt),
            per_endpoint=rt.settings.webhook_max_in_flight_per_endpoint,
            allowed=rt.settings.webhook_allowed,
        )

    def publish_deliveries(ids: Sequence[str]) -> None:
        timeout = runtime().settings.webhook_timeout
        with app.producer_or_acquire() as producer:
            for delivery_id in ids:
                webhooks_deliver.apply_async(
                    (delivery_id,),
                    producer=producer,
                    # Its own limits: a task ends within two attempts' timeouts.
                    soft_time_limit=int(timeout * 2 + 30),
                    time_limit=int(timeout * 2 + 60),
                )

    @app.task(name="callbacks.webhooks_sweep", shared=False)
    def webhooks_sweep() -> int:
        rt = runtime()
        return webhook_jobs.sweep(
            rt.sessions,
            rt.clock,
            publish_deliveries,
            lease=webhook_lease(rt),
            per_endpoint=rt.settings.webhook_max_in_flight_per_endpoint,
        )

    @app.task(name="callbacks.webhooks_purge", shared=False)
    def webhooks_purge() -> int:
        rt = runtime()
        retention = timedelta(seconds=rt.settings.webhook_retention)
        return webhook_jobs.purge(rt.sessions, rt.clock, retention=retention)
