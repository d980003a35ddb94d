"""Reading back what was published: the messages waiting in the Redis dispatch queue."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis

from worker.celery.config import DISPATCH_QUEUE, MANUAL_QUEUE


def queued_dispatches(redis_url: str) -> list[tuple[str, list[Any]]]:
    """(task name, args) of every message waiting in the Redis dispatch queues (the
    poller's, then the operators')."""
    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.lrange(DISPATCH_QUEUE, 0, -1) + client.lrange(MANUAL_QUEUE, 0, -1)
    finally:
        client.close()
    out = []
    for item in raw:
        message = json.loads(item)
        args = json.loads(_body(message))[0]
        out.append((message["headers"]["task"], args))
    return out


def _body(message: dict[str, Any]) -> str:
    body: str = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        return base64.b64decode(body).decode()
    return body
