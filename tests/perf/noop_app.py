"""The drain baseline: a bare Celery app with the worker's own settings and no work.

``celery -A tests.perf.noop_app worker`` runs with exactly the configuration
``celery -A worker worker`` gets from the same environment (broker, transport options,
pool, concurrency, prefetch, acks), so the difference to our drain is our work per
callback, not Celery's. ``perf.sleep`` waits like a dial of the same delay would.
"""

from __future__ import annotations

import time

from celery import Celery

from worker.celery.config import celery_config
from worker.settings import load_settings

app = Celery("perf_noop")
app.config_from_object(celery_config(load_settings()))


@app.task(name="perf.noop")
def noop(i: int) -> None:
    return None


@app.task(name="perf.sleep")
def sleep(seconds: float) -> None:
    time.sleep(seconds)
