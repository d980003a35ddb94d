"""Peer: Procrastinate (a PostgreSQL-backed task queue) placing the same calls.

Each callback is one job deferred with ``schedule_at = scheduled_at``; the task posts the
same ``VoiceDialRequest`` to the stand-in (aiohttp: Procrastinate runs async tasks
concurrently on one event loop) and marks the callback row dispatched, one UPDATE.

    procrastinate --app=tests.perf.peer_procrastinate.app worker --concurrency 800
"""

from __future__ import annotations

import os

import aiohttp
from procrastinate import App, PsycopgConnector

app = App(connector=PsycopgConnector(conninfo=os.environ.get("PERF_DSN", "")))
_http: list[aiohttp.ClientSession] = []

MARK_DISPATCHED = (
    "UPDATE callbacks SET status = 'dispatched', dispatched_at = now(), "
    "created_session_id = %(sid)s WHERE id = %(id)s"
)


@app.task(name="perf.place_call")
async def place_call(callback_id: str, to: str) -> None:
    if not _http:
        limit = int(os.environ.get("PERF_CONCURRENCY", "64"))
        _http.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit)))
    url = os.environ["SPEKO_API_URL"].rstrip("/") + "/v1/sessions/phone"
    headers = {
        "Authorization": f"Bearer {os.environ['SPEKO_API_KEY']}",
        "Idempotency-Key": f"{callback_id}.1",
    }
    body = {"to": to, "agentId": "agent_1", "metadata": {"callback_id": callback_id}}
    async with _http[0].post(url, json=body, headers=headers) as resp:
        resp.raise_for_status()
        doc = await resp.json()
    await app.connector.execute_query_async(MARK_DISPATCHED, sid=doc["sessionId"], id=callback_id)
