"""Issue 14's loop with real processes, under worker SIGKILLs.

``python -m tests.chaos.platform_loop [--callbacks 1000 --kills 3]``: signed ``call.report``
events (each delivered twice, in a shuffled order) ask for N callbacks through
``POST /webhooks/speko`` on a real ``callbacks api``; a real ``celery worker`` and
``celery beat`` dial them at the provider stand-in (tests.support.provider), which then
posts each call's signed outcome to the receiver itself (30 % no answer, 10 % busy, 10 %
voicemail, the rest answered; half of the pushes dropped, so the worker's pull finds
those). The policy redials no answer and busy twice, one second after the outcome. The
worker is SIGKILLed ``--kills`` times while calls are being placed (and started again, as
a supervisor would).

Checked at the end: exactly N callbacks from the reports, plus exactly the redials the
policy asks for (2 per no-answer or busy number, none for voicemail or answered, never a
third); every callback ``dispatched`` with the call the stand-in placed for its
Idempotency-Key, each key placed once; every callback's ``call_outcome`` the one its
number's calls had. Measured: the time from an outcome push (answered 2xx) to its redial
being stored.

It runs on a private PostgreSQL cluster and a private ``redis-server`` (tests.support.faults),
removed after. Exit status 0 when every check holds.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.processes import api_ready, free_port, processes, wait_until
from tests.support.provider import Provider, outcome_mix
from tests.support.scenario import worker_env
from tests.support.supervisor import Supervisor
from tests.support.webhooks_in import event, new_secret, signed
from worker.db.engine import make_engine, make_sessions
from worker.db.models import Callback
from worker.status import Status

ORG = "org_loop"
PER_NUMBER = {"no_answer": 3, "busy": 3, "voicemail": 1, "answered": 1}
"""Callbacks per number with REDIAL_MAX=2 on no_answer,busy: the first and two redials."""


@dataclass(frozen=True)
class LoopConfig:
    callbacks: int = 1_000
    kills: int = 3
    """Worker SIGKILLs, spread over the calls being placed."""
    no_answer: float = 0.3
    busy: float = 0.1
    voicemail: float = 0.1
    drop_share: float = 0.5
    """Share of the stand-in's outcome pushes never sent (the pull must find them)."""
    pull_after: float = 4.0
    concurrency: int = 4
    timeout: float = 900.0
    seed: int = 14


@dataclass
class LoopReport:
    config: LoopConfig
    expected: int = 0
    callbacks: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_outcome: dict[str, int] = field(default_factory=dict)
    redials: int = 0
    placed: int = 0
    dial_requests: int = 0
    provider_duplicates: int = 0
    pushes_sent: int = 0
    pushes_dropped: int = 0
    kills: int = 0
    restarts_on_their_own: int = 0
    to_redial: list[float] = field(default_factory=list)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        delays = sorted(self.to_redial)

        def pct(p: float) -> str:
            return f"{delays[min(len(delays) - 1, int(p * len(delays)))]:.2f} s" if delays else "-"

        lines = [
            "platform loop report",
            f"  callbacks asked by reports : {self.config.callbacks} (each report sent twice)",
            f"  callbacks stored           : {self.callbacks} (expected {self.expected}; "
            f"{self.redials} redials)",
            f"  by status                  : {self.by_status}",
            f"  by call_outcome            : {self.by_outcome}",
            f"  provider: calls placed     : {self.placed} over {self.dial_requests} dial "
            f"requests; keys placed twice: {self.provider_duplicates}",
            f"  outcome pushes             : {self.pushes_sent} sent, {self.pushes_dropped} "
            "dropped (pulled)",
            f"  worker SIGKILLs            : {self.kills} (exits on their own: "
            f"{self.restarts_on_their_own})",
            f"  outcome push -> redial     : p50 {pct(0.5)}, p99 {pct(0.99)}, max "
            f"{delays[-1] if delays else 0:.2f} s over {len(delays)}",
            f"  wall time                  : {self.seconds:.0f} s",
            "  problems                   : " + ("none" if self.ok else ""),
        ]
        lines += [f"    - {p}" for p in self.problems[:20]]
        return "\n".join(lines)


def _all(sessions: sessionmaker[Session]) -> list[Callback]:
    with sessions() as s:
        return list(s.scalars(select(Callback).order_by(Callback.created_at, Callback.id)))


def _settled(sessions: sessionmaker[Session], expected: int) -> bool:
    with sessions() as s:
        total = s.scalar(select(func.count()).select_from(Callback))
        open_ = s.scalar(
            select(func.count()).where(
                (Callback.status != Status.DISPATCHED.value) | Callback.call_outcome.is_(None)
            )
        )
    return total == expected and open_ == 0


def run_loop(config: LoopConfig, pg_url: str, broker_url: str, workdir: Path) -> LoopReport:
    began = time.monotonic()
    engine = make_engine(pg_url, pool_size=2)
    sessions = make_sessions(engine)
    provider = Provider().start()
    report = LoopReport(config)
    try:
        _run(config, pg_url, broker_url, workdir, sessions, provider, report)
    finally:
        provider.stop()
        engine.dispose()
    report.seconds = time.monotonic() - began
    return report


def _run(
    config: LoopConfig,
    pg_url: str,
    broker_url: str,
    workdir: Path,
    sessions: sessionmaker[Session],
    provider: Provider,
    report: LoopReport,
) -> None:
    rng = random.Random(config.seed)
    secret = new_secret()
    port = free_port()
    numbers = [f"+1201555{i:04d}" for i in range(config.callbacks)]
    rng.shuffle(numbers)
    behaviours = outcome_mix(
        numbers, no_answer=config.no_answer, busy=config.busy, voicemail=config.voicemail
    )
    provider.call_behaviours.update(behaviours)
    report.expected = sum(PER_NUMBER[b] for b in behaviours.values())
    env = worker_env(
        pg_url, broker_url, provider, workdir,
        PORT=str(port), SPEKO_WEBHOOK_SECRET=secret,
        REDIAL_MAX="2", REDIAL_ON="no_answer,busy", REDIAL_INTERVALS="1s",
        OUTCOME_PULL_AFTER=str(config.pull_after),
        # A dial in flight when its worker is killed is re-sent with the same key (the
        # stand-in honours it): it ends dispatched, never placed twice.
        UNKNOWN_OUTCOME_POLICY="redial-same-key",
        WORKER_CONCURRENCY=str(config.concurrency),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    pushes = provider.push_events_to(f"{base}/webhooks/speko", secret, drop_share=config.drop_share)
    at = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    deliveries = []
    for i, number in enumerate(numbers):
        body = event(
            "call.report",
            {"session_id": f"src_{i}", "organization_id": ORG,
             "scheduled_callback": {"to_number": number, "scheduled_at": at,
                                    "reason": "asked for a call back"}},
        )  # fmt: skip
        deliveries += [signed(secret, body, webhook_id=f"report_{i}")] * 2
    rng.shuffle(deliveries)
    kill_at = [report.expected * (k + 1) // (config.kills + 1) for k in range(config.kills)]
    with processes(workdir, env) as procs, httpx.Client(base_url=base, timeout=30) as http:
        sup = Supervisor(procs)
        sup.start("api", "callbacks", "api")
        sup.start("worker", "celery", "-A", "worker", "worker", "-c", str(config.concurrency))
        sup.start("beat", "celery", "-A", "worker", "beat")
        wait_until(lambda: api_ready(http), timeout=60, what="the api")
        for raw, headers in deliveries:
            r = http.post("/webhooks/speko", content=raw, headers=headers)
            if r.status_code != 200:
                report.problems.append(f"report delivery answered {r.status_code}: {r.text}")

        def progress() -> bool:
            sup.ensure_running()
            if kill_at and len(provider.calls) >= kill_at[0]:
                kill_at.pop(0)
                sup.kill("worker")
                report.kills += 1
            return not kill_at and _settled(sessions, report.expected)

        try:
            wait_until(
                progress, timeout=config.timeout, what="every callback dialed, outcomes known"
            )
        except AssertionError as exc:
            report.problems.append(str(exc))
        report.restarts_on_their_own = len(sup.exited_on_their_own())
    _check(sessions, provider, behaviours, report)
    report.pushes_sent = len(pushes.sent_at)
    report.pushes_dropped = len(pushes.dropped)
    made = _all(sessions)
    by_id = {c.id: c for c in made}
    for cb in made:
        parent = by_id.get(cb.metadata_.get("redial_of", ""))
        if parent is not None and parent.created_session_id in pushes.sent_at:
            pushed = pushes.sent_at[parent.created_session_id]
            report.to_redial.append(cb.created_at.timestamp() - pushed)


def _check(
    sessions: sessionmaker[Session],
    provider: Provider,
    behaviours: dict[str, str],
    report: LoopReport,
) -> None:
    made = _all(sessions)
    problems = report.problems
    report.callbacks = len(made)
    report.by_status = dict(Counter(str(c.status) for c in made))
    report.by_outcome = dict(Counter(str(c.call_outcome) for c in made))
    report.redials = sum(1 for c in made if "redial_of" in c.metadata_)
    report.placed = len(provider.calls)
    report.dial_requests = sum(1 for r in provider.requests if r.path == "/v1/sessions/phone")
    report.provider_duplicates = provider.duplicates
    if report.callbacks != report.expected:
        problems.append(f"{report.callbacks} callbacks, expected {report.expected}")
    firsts = [c for c in made if "redial_of" not in c.metadata_]
    if len({c.source_session_id for c in firsts}) != len(firsts) or len(firsts) != len(behaviours):
        problems.append(f"{len(firsts)} callbacks from {len(behaviours)} reports")
    if provider.duplicates:
        problems.append(f"{provider.duplicates} idempotency keys placed twice")
    if report.placed != report.callbacks:
        problems.append(f"{report.placed} calls placed for {report.callbacks} callbacks")
    chains: dict[str, list[Callback]] = {}
    for cb in made:
        chains.setdefault(cb.to_number, []).append(cb)
        if cb.status != Status.DISPATCHED.value:
            problems.append(f"{cb.id} ended {cb.status}")
        elif provider.calls.get(cb.idempotency_key) != cb.created_session_id:
            problems.append(f"{cb.id}: session {cb.created_session_id} is not its key's call")
        if cb.call_outcome != behaviours.get(cb.to_number):
            problems.append(f"{cb.id}: outcome {cb.call_outcome}, its number's calls were "
                            f"{behaviours.get(cb.to_number)}")  # fmt: skip
    for number, behaviour in behaviours.items():
        chain = chains.get(number, [])
        got = sorted(c.metadata_.get("redial_number", 0) for c in chain)
        if got != list(range(PER_NUMBER[behaviour])):
            problems.append(f"{number} ({behaviour}): redial numbers {got}")


def main(argv: list[str] | None = None) -> int:
    d = LoopConfig()
    p = argparse.ArgumentParser(prog="python -m tests.chaos.platform_loop", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--callbacks", type=int, default=d.callbacks)
    p.add_argument("--kills", type=int, default=d.kills)
    p.add_argument("--drop-share", type=float, default=d.drop_share)
    p.add_argument("--pull-after", type=float, default=d.pull_after)
    p.add_argument("--concurrency", type=int, default=d.concurrency)
    p.add_argument("--timeout", type=float, default=d.timeout)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workdir", type=Path, default=None, help="keep process logs here")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    config = LoopConfig(
        callbacks=a.callbacks, kills=a.kills, drop_share=a.drop_share, pull_after=a.pull_after,
        concurrency=a.concurrency, timeout=a.timeout, seed=a.seed,
    )  # fmt: skip
    # Imported here: the pytest short form gets its servers from fixtures.
    from tests.support.databases import sqlalchemy_url
    from tests.support.faults import private_cluster, private_redis
    from worker.db.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="platform-loop-") as tmp:
        logs = a.workdir or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        print(f"platform loop: {config}\nprocess logs in {logs}", flush=True)
        with private_redis(Path(tmp) / "redis") as redis, private_cluster() as cluster:
            url = sqlalchemy_url(cluster.create_database("callbacks_loop"))
            upgrade(url)
            report = run_loop(config, url, redis.url(), logs)
        print(report.render(), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
