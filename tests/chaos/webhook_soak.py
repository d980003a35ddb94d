"""Issue 15's soak with real processes: ``python -m tests.chaos.webhook_soak [--callbacks 2000]``.

N callbacks are created through ``callbacks schedule`` (due over ``--spread`` seconds), a
real ``celery worker`` and ``celery beat`` dial them at the provider stand-in, which
refuses 5 % of the numbers with 400 (``failed``); 5 % are cancelled before they are due.
Their organization has a healthy webhook endpoint (a receiver on 127.0.0.1 that verifies
every signature with the ``standardwebhooks`` package) and, in the second phase, three
bad ones beside it: one down (nothing listens on its port), one answering 500 to
everything, one taking 20 s to answer (past WEBHOOK_TIMEOUT, 15 s). Dials and polls run
on one worker, deliveries on a worker of their own (``-Q callbacks.webhooks``, as the
README deploys it beside slow endpoints). In both phases both workers are SIGKILLed once,
when half of the healthy endpoint's events have arrived (and started again, as a
supervisor would).

Checked per phase: every event arrives at the healthy endpoint at least once; after
deduplication by ``webhook-id`` each callback's events are exactly ``callback.scheduled``
then the one of its final status, in sequence order, each one the outbox holds (nothing
invented). Measured per phase: the healthy endpoint's delivery latency (event timestamp,
written in the transaction of the change, to its first arrival) and the dispatch lateness
(``dispatched_at - scheduled_at``), p50/p99: the first phase is the baseline of the same run.

``--scenario flaky`` (issue 15's done-when): ONE receiver, down (nothing listening) for
the first ``--down-for`` seconds (60), then answering 500 to the first arrival of every
10th event and taking 20 s (past WEBHOOK_TIMEOUT) over the first arrival of every 40th,
first alone, then beside a second endpoint dead throughout (nothing listens on its
port). Events written while it is down get their third attempt 5 min after their second
(the schedule: at once, 5 s, 5 min, 30 min, ...); the soak waits for them. The 500s and
slow answers fall only on events written after it came up, and only on their first
arrival: a 500 to a third attempt would push it to the 30-min retry, a second one to the
2 h one. Latency is reported for all events and for those written once it was up (the
healthy receiver's); the two phases' figures compare "alone" with "beside a dead one".

It runs on a private PostgreSQL cluster and a private ``redis-server`` (tests.support.faults),
removed after. Exit status 0 when every check holds.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from freezegun import freeze_time
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook

from tests.support.processes import Processes, free_port, processes, wait_until
from tests.support.provider import Behaviour, Provider, Received, Reply
from tests.support.scenario import worker_env
from tests.support.supervisor import Supervisor
from tests.support.webhook_receiver import Answer, Hit, Receiver
from worker.actions import cancel
from worker.celery.config import DISPATCH_QUEUE, POLL_QUEUE, WEBHOOK_QUEUE
from worker.db.engine import make_engine, make_sessions
from worker.db.models import Base, Callback, WebhookEvent
from worker.status import Status

ORG = "org_soak"
TABLES = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
FINAL_EVENT = {
    Status.DISPATCHED.value: "callback.dispatched",
    Status.FAILED.value: "callback.failed",
    Status.CANCELLED.value: "callback.cancelled",
}


@dataclass(frozen=True)
class SoakConfig:
    callbacks: int = 2_000
    spread: float = 60.0
    """Seconds over which the callbacks come due."""
    fail_share: float = 0.05
    cancel_share: float = 0.05
    kill: bool = True
    timeout: float = 900.0
    scenario: str = "bad-endpoints"
    """``bad-endpoints``: a healthy endpoint, then beside down, 500 and 20 s ones;
    ``flaky``: one receiver down for ``down_for`` s, then flaky, alone then beside a dead
    endpoint."""
    down_for: float = 60.0
    fail_every: int = 10
    slow_every: int = 40


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


@dataclass
class Phase:
    name: str
    events: int = 0
    """Distinct events the healthy endpoint received."""
    requests: int = 0
    by_final_status: dict[str, int] = field(default_factory=dict)
    latency: list[float] = field(default_factory=list)
    up_latency: list[float] = field(default_factory=list)
    """Events written once the receiver was up (``flaky``): the healthy receiver's latency."""
    answered: dict[str, int] = field(default_factory=dict)
    lateness: list[float] = field(default_factory=list)
    bad_requests: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def render(self) -> str:
        return (
            f"  [{self.name}] healthy endpoint: {self.events} events in {self.requests} requests; "
            f"latency p50 {_pct(self.latency, 0.5):.3f} s, p99 {_pct(self.latency, 0.99):.3f} s, "
            f"max {max(self.latency, default=float('nan')):.3f} s\n"
            + (
                f"  [{self.name}] written once the receiver was up: {len(self.up_latency)} "
                f"events, latency p50 {_pct(self.up_latency, 0.5):.3f} s, p99 "
                f"{_pct(self.up_latency, 0.99):.3f} s, max "
                f"{max(self.up_latency, default=float('nan')):.3f} s; answers {self.answered}\n"
                if self.answered
                else ""
            )
            + f"  [{self.name}] dispatch lateness p50 {_pct(self.lateness, 0.5):.3f} s, "
            f"p99 {_pct(self.lateness, 0.99):.3f} s; final statuses {self.by_final_status}\n"
            f"  [{self.name}] requests to the bad endpoints {self.bad_requests}; worker SIGKILLs "
            f"{self.kills}; {self.seconds:.0f} s; problems: "
            + ("none" if not self.problems else "; ".join(self.problems[:10]))
        )


@dataclass
class SoakReport:
    config: SoakConfig
    phases: list[Phase] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(not p.problems for p in self.phases)

    def render(self) -> str:
        return "\n".join(["webhook soak report", *(p.render() for p in self.phases)])


def run_soak(config: SoakConfig, pg_url: str, broker_url: str, workdir: Path) -> SoakReport:
    report = SoakReport(config)
    engine = make_engine(pg_url, pool_size=2)
    sessions = make_sessions(engine)
    try:
        names = (
            ("alone", "beside a dead endpoint")
            if config.scenario == "flaky"
            else ("alone", "beside bad endpoints")
        )
        for name, bad in zip(names, (False, True), strict=True):
            with engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
            redis.Redis.from_url(broker_url).flushdb()
            phase_dir = workdir / name.replace(" ", "-")
            phase_dir.mkdir(parents=True, exist_ok=True)
            report.phases.append(_phase(name, bad, config, pg_url, broker_url, phase_dir, sessions))
    finally:
        engine.dispose()
    return report


def _refuses(numbers: set[str]) -> Behaviour:
    def behaviour(req: Received) -> Reply:
        to = req.body.get("to") if isinstance(req.body, dict) else None
        return Reply(400) if to in numbers else Reply(200)

    return behaviour


class Flaky:
    """The ``flaky`` scenario's receiver: nothing listens on its port until ``start`` (down);
    once up, the first arrival of every ``fail_every``-th event written since is answered
    500 and of every ``slow_every``-th one in 20 s."""

    def __init__(self, config: SoakConfig) -> None:
        self.config = config
        self.port = free_port()
        self.receiver: Receiver | None = None
        self.up_at = float("inf")
        self.new_events = 0
        self.answered = {"500": 0, "20 s": 0}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    @property
    def hits(self) -> list[Hit]:
        return list(self.receiver.hits) if self.receiver else []

    def start(self) -> None:
        self.up_at = time.time()
        self.receiver = Receiver(port=self.port, behaviour=self.behaviour).start()

    def stop(self) -> None:
        if self.receiver:
            self.receiver.stop()

    def behaviour(self, hit: Hit, new: bool) -> tuple[Answer, float] | None:
        written = _timestamp(json.loads(hit.body)["timestamp"])
        if not new or written < self.up_at:
            return None
        self.new_events += 1  # under the receiver's handler threads: counted roughly
        n = self.new_events
        if n % self.config.fail_every == 0:
            self.answered["500"] += 1
            return Answer(500), 0.0
        if n % self.config.slow_every == 1:
            self.answered["20 s"] += 1
            return Answer(200), 20.0
        return None


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _phase(
    name: str,
    bad: bool,
    config: SoakConfig,
    pg_url: str,
    broker_url: str,
    workdir: Path,
    sessions: sessionmaker[Session],
) -> Phase:
    began = time.monotonic()
    phase = Phase(name)
    n = config.callbacks
    flaky = config.scenario == "flaky"
    numbers = [f"+1201555{i % 10_000:04d}" for i in range(n)]
    failing = {numbers[i] for i in range(n) if i % round(1 / config.fail_share) == 7}
    provider = Provider(_refuses(failing)).start()
    healthy: Receiver | Flaky = Flaky(config) if flaky else Receiver().start()
    broken = Receiver(status=500).start()
    slow = Receiver(delay=20).start()
    down_url = f"http://127.0.0.1:{free_port()}/hooks"  # nothing listens there
    env = worker_env(pg_url, broker_url, provider, workdir,
                     WEBHOOK_SWEEP_INTERVAL="0.2", WEBHOOK_TIMEOUT="15")  # fmt: skip
    step = timedelta(seconds=config.spread) / n
    expected = 2 * n
    try:
        with processes(workdir, env) as procs:
            sup = Supervisor(procs)
            urls = [healthy.url]
            if bad:
                urls += [down_url] if flaky else [down_url, broken.url, slow.url]
            secret = ""
            for url in urls:
                added = procs.run("callbacks", "webhook", "add", "--org", ORG, "--url", url)
                assert added.returncode == 0, added.stderr.decode()
                secret = secret or json.loads(added.stdout)["secret"]
            # As the README deploys it when customers' endpoints may be slow: dials and
            # polls on one worker, webhook deliveries on a worker of their own (16 threads:
            # the default; the three bad endpoints can hold 3 x 4 of them).
            sup.start("worker", "celery", "-A", "worker", "worker", "-n", "dials@%h",
                      "-Q", f"{DISPATCH_QUEUE},{POLL_QUEUE}")  # fmt: skip
            sup.start("hooks", "celery", "-A", "worker", "worker", "-n", "hooks@%h",
                      "-Q", WEBHOOK_QUEUE, "-c", "16")  # fmt: skip
            sup.start("beat", "celery", "-A", "worker", "beat")
            for worker in ("worker", "hooks"):
                _wait_started(procs, worker)
            start = datetime.now(UTC) + timedelta(seconds=5)
            lines = [
                json.dumps({"organization_id": ORG, "to_number": numbers[i],
                            "scheduled_at": (start + step * i).isoformat(),
                            "reason": f"soak {i}"})
                for i in range(n)
            ]  # fmt: skip
            (workdir / "callbacks.jsonl").write_text("\n".join(lines) + "\n")
            down_until = time.monotonic() + config.down_for
            created = procs.run("callbacks", "schedule", "--file", "callbacks.jsonl")
            assert created.returncode == 0, created.stderr.decode()
            _cancel_some(sessions, config, start + timedelta(seconds=config.spread / 2))
            killed = not config.kill

            def unique() -> int:
                return len({h.headers["webhook-id"] for h in healthy.hits})

            def progress() -> bool:
                nonlocal killed
                down = isinstance(healthy, Flaky) and healthy.receiver is None
                if down and time.monotonic() >= down_until:
                    assert isinstance(healthy, Flaky)
                    healthy.start()
                sup.ensure_running()
                got = unique()
                if not killed and got >= expected // 2:
                    for worker in ("worker", "hooks"):  # mid-dial and mid-delivery
                        sup.kill(worker)
                        phase.kills += 1
                    killed = True
                return got >= expected

            try:
                wait_until(progress, timeout=config.timeout, what="every event at the healthy one")
            except AssertionError as exc:
                phase.problems.append(str(exc))
            procs.stop("beat")
            for worker in ("worker", "hooks"):  # not waiting on a 15 s attempt to end
                procs.stop(worker, signal.SIGKILL)
    finally:
        for receiver in (healthy, broken, slow):
            receiver.stop()
        provider.stop()
    if isinstance(healthy, Flaky):
        phase.answered = dict(healthy.answered)
    else:
        phase.bad_requests = {"500": len(broken.hits), "20 s": len(slow.hits)}
    up_at = healthy.up_at if isinstance(healthy, Flaky) else 0.0
    _check(phase, sessions, healthy.hits, secret, expected, up_at)
    phase.seconds = time.monotonic() - began
    return phase


def _wait_started(procs: Processes, name: str) -> None:
    wait_until(lambda: " ready." in procs.log(name), timeout=120, what=f"{name} to start")


def _cancel_some(sessions: sessionmaker[Session], config: SoakConfig, after: datetime) -> None:
    """Cancel a share of the callbacks due in the second half (still scheduled now)."""
    with sessions.begin() as s:
        ids = list(
            s.scalars(
                select(Callback.id).where(Callback.scheduled_at >= after).order_by(Callback.id)
            )
        )
    for cb_id in ids[:: round(0.5 / config.cancel_share)]:
        with sessions.begin() as s:
            cancel(s, ORG, cb_id, now=datetime.now(UTC), actor="soak", reason="soak")


def _check(
    phase: Phase,
    sessions: sessionmaker[Session],
    hits: list[Hit],
    secret: str,
    expected: int,
    up_at: float = 0.0,
) -> None:
    problems = phase.problems
    with sessions() as s:
        callbacks = {c.id: c for c in s.scalars(select(Callback))}
        outbox = {e.id: e for e in s.scalars(select(WebhookEvent))}
    first: dict[str, Hit] = {}
    bodies: dict[str, dict[str, object]] = {}
    hook = Webhook(secret)
    for hit in sorted(hits, key=lambda h: h.at):
        message_id = hit.headers["webhook-id"]
        sent_at = datetime.fromtimestamp(int(hit.headers["webhook-timestamp"]), UTC)
        with freeze_time(sent_at):
            body = hook.verify(hit.body, hit.headers)
        if message_id in bodies:
            if bodies[message_id] != body:
                problems.append(f"{message_id} sent twice with different bodies")
            continue
        first[message_id], bodies[message_id] = hit, body
    phase.events, phase.requests = len(first), len(hits)
    if len(first) != expected:
        problems.append(f"{len(first)} distinct events, expected {expected}")
    per_callback: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for message_id, hit in first.items():
        body = bodies[message_id]
        data = body["data"]
        assert isinstance(data, dict)
        cb_id = data["callback"]["id"]
        stored = outbox.get(message_id)
        if stored is None or stored.callback_id != cb_id or stored.type != body["type"]:
            problems.append(f"{message_id}: not an event the outbox holds")
            continue
        per_callback[cb_id].append((hit.at, stored.sequence, str(body["type"])))
        created = datetime.fromisoformat(str(body["timestamp"]).replace("Z", "+00:00"))
        phase.latency.append(hit.at - created.timestamp())
        if created.timestamp() >= up_at:
            phase.up_latency.append(hit.at - created.timestamp())
    finals: dict[str, int] = defaultdict(int)
    for cb_id, cb in callbacks.items():
        finals[str(cb.status)] += 1
        got = [kind for _, _, kind in sorted(per_callback.get(cb_id, []))]
        want = ["callback.scheduled", FINAL_EVENT.get(str(cb.status), "?")]
        if got != want:
            problems.append(f"{cb_id} ({cb.status}): received {got}")
        sequences = [seq for _, seq, _ in sorted(per_callback.get(cb_id, []))]
        if sequences != sorted(sequences):
            problems.append(f"{cb_id}: arrived out of sequence {sequences}")
        if cb.dispatched_at is not None:
            phase.lateness.append((cb.dispatched_at - cb.scheduled_at).total_seconds())
    phase.by_final_status = dict(finals)


def main(argv: list[str] | None = None) -> int:
    d = SoakConfig()
    p = argparse.ArgumentParser(prog="python -m tests.chaos.webhook_soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--callbacks", type=int, default=d.callbacks)
    p.add_argument("--spread", type=float, default=d.spread)
    p.add_argument("--no-kill", action="store_true")
    p.add_argument("--timeout", type=float, default=d.timeout)
    p.add_argument("--workdir", type=Path, default=None, help="keep process logs here")
    p.add_argument("--scenario", choices=("bad-endpoints", "flaky"), default=d.scenario)
    p.add_argument("--down-for", type=float, default=d.down_for)
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    config = SoakConfig(callbacks=a.callbacks, spread=a.spread, kill=not a.no_kill,
                        timeout=a.timeout, scenario=a.scenario,
                        down_for=a.down_for)  # fmt: skip
    from tests.support.databases import sqlalchemy_url
    from tests.support.faults import private_cluster, private_redis
    from worker.db.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="webhook-soak-") as tmp:
        logs = a.workdir or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        print(f"webhook soak: {config}\nprocess logs in {logs}", flush=True)
        with private_redis(Path(tmp) / "redis") as server, private_cluster() as cluster:
            url = sqlalchemy_url(cluster.create_database("callbacks_soak"))
            upgrade(url)
            report = run_soak(config, url, server.url(), logs)
        print(report.render(), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
