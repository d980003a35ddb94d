"""Soak of the embedded broker: producers and consumers in separate processes hammer one
folder; every message must arrive exactly once and no process may fail.

Bounded form: ``tests/integration/test_embedded_broker.py``. Long form::

    python -m tests.support.broker_soak --rounds 200 --messages 2000
    python -m tests.support.broker_soak --transport kombu   # kombu's own, for comparison
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from queue import Empty
from typing import Any

from kombu import Connection

from worker.celery.embedded_broker import TRANSPORT, create_folders, transport_options

QUEUE = "soak"
TRANSPORTS = {"ours": TRANSPORT, "kombu": "filesystem"}


@dataclass(frozen=True)
class Result:
    sent: int
    received: int
    duplicates: int
    missing: int
    errors: list[str]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.errors and self.duplicates == 0 and self.missing == 0


def _connection(folder: Path, transport: str) -> Connection:
    create_folders(folder)
    return Connection(
        "filesystem://", transport=transport, transport_options=transport_options(folder)
    )


def _produce(folder: Path, transport: str, producer: int, count: int, reconnect_every: int) -> None:
    sent = 0
    while sent < count:
        # A fresh connection now and then re-declares the queue, as each process start
        # does: the exchange table is rewritten while others read it.
        with _connection(folder, transport) as conn, conn.SimpleQueue(QUEUE) as queue:
            for _ in range(min(reconnect_every, count - sent)):
                queue.put({"id": f"{producer}:{sent}"})
                sent += 1


def _consume(folder: Path, transport: str, out: Path, done: Synchronized[int], total: int) -> None:
    with (
        _connection(folder, transport) as conn,
        conn.SimpleQueue(QUEUE) as queue,
        out.open("w") as f,
    ):
        while done.value < total:
            try:
                message = queue.get(timeout=0.05)
            except Empty:
                continue
            f.write(message.payload["id"] + "\n")
            message.ack()
            with done.get_lock():
                done.value += 1


def _guarded(target: Any, errors: Path, *args: Any) -> None:
    try:
        target(*args)
    except BaseException:
        errors.write_text(traceback.format_exc())
        sys.exit(1)


def soak(
    folder: Path,
    *,
    transport: str = TRANSPORT,
    producers: int = 4,
    consumers: int = 4,
    messages: int = 400,
    timeout: float = 120.0,
) -> Result:
    """``messages`` in all, split over the producers; consumers run until all arrived."""
    per_producer = messages // producers
    total = per_producer * producers
    ctx = multiprocessing.get_context("spawn")
    done: Synchronized[int] = ctx.Value("i", 0)
    began = time.monotonic()
    procs = [
        ctx.Process(
            target=_guarded,
            args=(
                _consume,
                folder / f"consumer{i}.err",
                folder,
                transport,
                folder / f"consumer{i}.out",
                done,
                total,
            ),
        )
        for i in range(consumers)
    ] + [
        ctx.Process(
            target=_guarded,
            args=(_produce, folder / f"producer{i}.err", folder, transport, i, per_producer, 25),
        )
        for i in range(producers)
    ]
    for p in procs:
        p.start()
    deadline = began + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    errors = [e.read_text() for e in sorted(folder.glob("*.err"))]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
            errors.append(f"process {p.name} still running after {timeout}s")
        elif p.exitcode != 0 and not errors:
            errors.append(f"process {p.name} exited {p.exitcode}")
    seconds = time.monotonic() - began
    ids = [
        line for f in sorted(folder.glob("consumer*.out")) for line in f.read_text().splitlines()
    ]
    expected = {f"{p}:{n}" for p in range(producers) for n in range(per_producer)}
    return Result(
        sent=total,
        received=len(ids),
        duplicates=len(ids) - len(set(ids)),
        missing=len(expected - set(ids)),
        errors=errors,
        seconds=seconds,
    )


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--messages", type=int, default=2000, help="messages per round")
    p.add_argument("--producers", type=int, default=4)
    p.add_argument("--consumers", type=int, default=4)
    p.add_argument("--transport", choices=sorted(TRANSPORTS), default="ours")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a round may take")
    args = p.parse_args()
    failures = 0
    began = time.monotonic()
    for n in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="broker-soak-") as tmp:
            r = soak(
                Path(tmp),
                transport=TRANSPORTS[args.transport],
                producers=args.producers,
                consumers=args.consumers,
                messages=args.messages,
                timeout=args.timeout,
            )
        if not r.ok:
            failures += 1
            first = r.errors[0].strip().splitlines()[-1] if r.errors else ""
            print(
                f"round {n}: FAILED sent={r.sent} received={r.received} "
                f"duplicates={r.duplicates} missing={r.missing} {first}",
                flush=True,
            )
    total = time.monotonic() - began
    print(
        f"{args.transport}: {args.rounds} rounds x {args.messages} messages "
        f"({args.producers} producers, {args.consumers} consumers): "
        f"{failures} failed rounds, {total:.0f} s"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
