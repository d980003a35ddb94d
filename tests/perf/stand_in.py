"""A fast provider stand-in for benchmarks: ``POST /v1/sessions/phone`` on aiohttp.

Runs in its own process (``python -m tests.perf.stand_in``) so its CPU is not the
benchmark's. It answers every dial after a configurable delay (200 ms, 50 ms, 0 ms),
counts requests per ``Idempotency-Key`` (a repeated key answers with the call it already
placed, and counts as a duplicate), and reports on ``GET /stats``. ``POST /reset`` and
``POST /config {"delay": s}`` let one stand-in serve every run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from aiohttp import web

from tests.perf.common import API_KEY, perf_env


class State:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.calls: dict[str, str] = {}
        self.duplicates = 0
        self.first = 0.0
        self.last = 0.0


def make_app(state: State) -> web.Application:
    async def dial(request: web.Request) -> web.Response:
        now = time.time()
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return web.json_response({"error": "Unauthorized", "code": "UNAUTHORIZED"}, status=401)
        body: Any = await request.json()
        key = request.headers.get("Idempotency-Key", "")
        state.requests += 1
        state.first = state.first or now
        state.last = now
        session_id = state.calls.get(key)
        if session_id is None:
            session_id = state.calls[key] = f"sess_{uuid.uuid4().hex[:16]}"
        else:
            state.duplicates += 1
        if state.delay:
            await asyncio.sleep(state.delay)
        return web.json_response(
            {
                "sessionId": session_id,
                "callControlId": f"cc_{session_id}",
                "roomName": f"room_{session_id}",
                "status": "dialing",
                "to": body.get("to", "") if isinstance(body, dict) else "",
                "from": "+12015550000",
            }
        )

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": state.requests,
                "keys": len(state.calls),
                "duplicates": state.duplicates,
                "first": state.first,
                "last": state.last,
                "delay": state.delay,
            }
        )

    async def reset(_: web.Request) -> web.Response:
        state.reset()
        return web.json_response({})

    async def config(request: web.Request) -> web.Response:
        doc = await request.json()
        state.delay = float(doc["delay"])
        return web.json_response({"delay": state.delay})

    app = web.Application()
    app.router.add_post("/v1/sessions/phone", dial)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    app.router.add_post("/config", config)
    return app


async def serve(port: int, delay: float) -> None:
    runner = web.AppRunner(make_app(State(delay)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    print(f"READY {runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


class StandIn:
    """The driver's handle on a stand-in process."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _call(self, method: str, path: str, doc: dict[str, Any] | None = None) -> Any:
        data = json.dumps(doc).encode() if doc is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (ours, 127.0.0.1)
            return json.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/stats")
        return result

    def reset(self, delay: float | None = None) -> None:
        self._call("POST", "/reset", {})
        if delay is not None:
            self._call("POST", "/config", {"delay": delay})


@contextmanager
def running_stand_in(delay: float = 0.0) -> Iterator[StandIn]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.perf.stand_in", "--delay", str(delay)],
        stdout=subprocess.PIPE,
        env=perf_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("READY "):
            raise RuntimeError(f"stand-in did not start: {line!r}")
        yield StandIn(f"http://127.0.0.1:{int(line.split()[1])}")
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description="provider stand-in for benchmarks")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    with suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.delay))


if __name__ == "__main__":
    main()
