"""(a) HTTP clients from many threads: urllib3 PoolManager vs httpx.Client vs aiohttp.

The dispatch task runs in a pool of threads, each placing one call at a time. This asks
which client gives the most requests per second from N threads sharing one client against
a provider answering in 50 ms. aiohttp is driven the only way threads can share it: one
event loop in its own thread, each worker thread submitting a coroutine and waiting.
Baseline: the ceiling N / delay (every thread always waiting on the server).

    python -m tests.perf.bench_http_clients --threads 50 200 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import aiohttp
import httpx
import urllib3

from tests.perf.common import API_KEY, Figure, Results, Stat, load1, machine_meta
from tests.perf.stand_in import running_stand_in

BODY = b'{"to": "+12015551234", "agentId": "agent_1", "metadata": {"callback_id": "cb_x"}}'
HEADERS = {
    "Authorization": f"Bearer {API_KEY}",
    "Content-Type": "application/json",
    "Idempotency-Key": "perf",
}

Post = Callable[[], int]


@contextmanager
def urllib3_client(url: str, threads: int) -> Iterator[Post]:
    pool = urllib3.PoolManager(maxsize=threads, block=False, retries=False)

    def post() -> int:
        return pool.request("POST", url, body=BODY, headers=HEADERS).status

    yield post
    pool.clear()


@contextmanager
def httpx_client(url: str, threads: int) -> Iterator[Post]:
    limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
    with httpx.Client(limits=limits, timeout=30) as client:

        def post() -> int:
            return client.post(url, content=BODY, headers=HEADERS).status_code

        yield post


@contextmanager
def aiohttp_client(url: str, threads: int) -> Iterator[Post]:
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()

    async def open_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=threads))

    session = asyncio.run_coroutine_threadsafe(open_session(), loop).result()

    async def one() -> int:
        async with session.post(url, data=BODY, headers=HEADERS) as resp:
            await resp.read()
            return resp.status

    def post() -> int:
        return asyncio.run_coroutine_threadsafe(one(), loop).result()

    try:
        yield post
    finally:
        asyncio.run_coroutine_threadsafe(session.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        runner.join()
        loop.close()


CLIENTS = {"urllib3": urllib3_client, "httpx": httpx_client, "aiohttp": aiohttp_client}


def hammer(post: Post, threads: int, seconds: float) -> float:
    """Requests per second from ``threads`` threads, each posting in a loop."""
    for _ in range(3):
        post()  # warm up
    done = [0] * threads
    errors: list[BaseException] = []
    stop = time.monotonic() + seconds

    def loop(i: int) -> None:
        try:
            while time.monotonic() < stop:
                if post() == 200:
                    done[i] += 1
        except BaseException as exc:  # a client failing is a result, reported
            errors.append(exc)

    began = time.monotonic()
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - began
    if errors:
        print(f"     {len(errors)} threads failed, first: {errors[0]!r}")
    return sum(done) / elapsed


def run(results: Results, *, threads: list[int], seconds: float, runs: int, delay: float) -> None:
    print(f"\n== HTTP clients from threads against a {delay * 1000:.0f} ms stand-in", flush=True)
    with running_stand_in(delay) as stand_in:
        url = stand_in.url + "/v1/sessions/phone"
        for n in threads:
            ceiling = n / delay if delay else 0.0
            rates: dict[str, list[float]] = {name: [] for name in CLIENTS}
            before = load1()
            for _ in range(runs):
                for name, make in CLIENTS.items():
                    with make(url, n) as post:
                        rates[name].append(hammer(post, n, seconds))
            after = load1()
            for name, values in rates.items():
                results.add(
                    Figure(
                        "http",
                        f"{name}, {n} threads, {delay * 1000:.0f} ms server",
                        "req/s",
                        Stat.of(values),
                        baseline=Stat.of([ceiling]) if ceiling else None,
                        baseline_name="ceiling threads/delay" if ceiling else "",
                        ratio=Stat.of([v / ceiling for v in values]) if ceiling else None,
                        load=(before, after),
                    )
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--threads", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.05)
    args = parser.parse_args()
    results = Results(machine_meta())
    run(results, threads=args.threads, seconds=args.seconds, runs=args.runs, delay=args.delay)
    print("\n" + results.table())


if __name__ == "__main__":
    main()
