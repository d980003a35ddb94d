"""What ``/readyz`` costs and how much memory a 100 MB body takes, on a real ``callbacks
api`` process (PostgreSQL + Redis): ``python -m tests.perf.bench_api_edges``.

Prints one JSON object. Bounded: a fixed number of requests to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import redis

from tests.support.databases import REDIS_URL, fresh_postgres_database, sqlalchemy_url

PROBES = 500
BODY_MB = 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024  # MB
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _chunks(total_mb: int) -> Iterator[bytes]:
    chunk = b'{"reason": "' + b"x" * (1024 * 1024 - 12)
    yield chunk
    for _ in range(total_mb - 1):
        yield b"x" * (1024 * 1024)


def main() -> None:
    cli = [sys.executable, "-m", "worker.cli.main"]
    with fresh_postgres_database("callbacks_bench_edges") as libpq:
        url = sqlalchemy_url(libpq)
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "BROKER_URL": REDIS_URL,
            "SPEKO_API_URL": "http://127.0.0.1:9",
            "SPEKO_API_KEY": "sk_bench_unused",
            "LOG_LEVEL": "WARNING",
        }
        subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)
        token = subprocess.run(
            [*cli, "api-key", "create", "--org", "org_bench"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        port = _free_port()
        api = subprocess.Popen(
            [*cli, "api", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        result: dict[str, object] = {}
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=30) as http:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if http.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise SystemExit("api did not start")
                    time.sleep(0.1)
                for _ in range(20):
                    http.get("/readyz")
                server = redis.Redis.from_url(REDIS_URL)
                conns = int(server.info("stats")["total_connections_received"])
                cpu = _cpu_seconds(api.pid)
                took = []
                for _ in range(PROBES):
                    t = time.perf_counter()
                    assert http.get("/readyz").status_code == 200
                    took.append(time.perf_counter() - t)
                result["readyz"] = {
                    "requests": PROBES,
                    "mean_ms": round(statistics.mean(took) * 1000, 2),
                    "p50_ms": round(statistics.median(took) * 1000, 2),
                    "p99_ms": round(sorted(took)[int(PROBES * 0.99)] * 1000, 2),
                    "api_cpu_ms_per_request": round(
                        (_cpu_seconds(api.pid) - cpu) / PROBES * 1000, 3
                    ),
                    "redis_connections_opened": int(
                        server.info("stats")["total_connections_received"]
                    )
                    - conns,
                }
                server.close()

                before = _status(api.pid)
                headers = {
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                }
                t = time.perf_counter()
                try:
                    r = http.post(
                        "/v1/callbacks/cb_bench/cancel",
                        content=_chunks(BODY_MB),
                        headers=headers,
                    )
                    answer: object = [r.status_code, r.json()]
                except httpx.HTTPError as exc:
                    answer = f"connection closed by the server ({type(exc).__name__})"
                result["body_100mb_chunked"] = {
                    "answer": answer,
                    "seconds": round(time.perf_counter() - t, 2),
                    "rss_mb_before": before["VmRSS"],
                    "peak_rss_mb_before": before["VmHWM"],
                    "peak_rss_mb_after": _status(api.pid)["VmHWM"],
                }
        finally:
            api.terminate()
            api.wait(timeout=20)
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
