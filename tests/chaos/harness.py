"""The chaos harness: real workers and beats on PostgreSQL and Redis, under faults.

Several ``celery -A worker beat`` and ``celery -A worker worker`` processes place
callbacks through a stand-in provider (threads in this process, on 127.0.0.1) that
answers a share with 503, a share with 400, and lets a share hang past the dialer timeout
*after* placing the call. Meanwhile the harness SIGKILLs workers at random (a supervisor
starts them again), restarts Redis once (its queue lost), terminates every database
connection of the workers now and then, restarts the database server and stops it for a
while (``db_restarts``, ``db_stops``), and cancels a few callbacks through the admin
service. Redis and the database server it stops are its own (tests.support.faults
PrivateRedis / PrivateCluster): nobody else's server is touched.
Then it waits until nothing is in flight and checks, against the provider's own
log, that nobody was called twice and nothing was lost or stranded.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import redis
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from tests.support.faults import PrivateCluster, PrivateRedis, terminate_backends
from tests.support.ledger import CallLedger, callback_id_of, requests_per_callback
from tests.support.processes import processes
from tests.support.provider import Provider, Received, Reply
from tests.support.scenario import (
    attempt_lease,
    count_by_status,
    rows,
    schedule_callbacks,
    unfinished,
    worker_env,
)
from tests.support.supervisor import Supervisor
from worker.actions import CallbackNotFound, StatusConflict, cancel
from worker.db.engine import make_engine, make_sessions
from worker.status import Status

HARNESS_APP = "chaos-harness"


@dataclass(frozen=True)
class ChaosConfig:
    callbacks: int = 5_000
    workers: int = 2
    beats: int = 2
    fault_seconds: float = 120.0
    """How long faults are injected; callbacks come due over ``spread`` of it."""
    spread: float = 0.6
    """Share of the fault window over which the callbacks come due."""
    kill_every: float = 6.0
    """Mean seconds between worker SIGKILLs (exponential)."""
    db_kill_every: float = 9.0
    """Mean seconds between terminations of every worker database connection."""
    redis_restarts: int = 1
    db_restarts: int = 0
    """Database server restarts (``pg_ctl restart -m fast``: every session ended)."""
    db_stops: int = 0
    db_stop_seconds: float = 60.0
    """How long each database stop lasts."""
    share_503: float = 0.10
    share_400: float = 0.05
    share_hang: float = 0.05
    hang_seconds: float = 2.5
    """How long a hanging answer takes: past the dialer's read timeout (1 s)."""
    cancel_share: float = 0.02
    concurrency: int = 8
    orgs: int = 8
    policy: str = "fail"
    quiesce_timeout: float = 300.0
    seed: int = 0


@dataclass
class ChaosReport:
    callbacks: int
    by_status: dict[str, int] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    placed_calls: int = 0
    cancels: Counter[str] = field(default_factory=Counter)
    duplicates: dict[str, list[str]] = field(default_factory=dict)
    stuck: list[str] = field(default_factory=list)
    wrong_session: list[str] = field(default_factory=list)
    dispatched_without_call: list[str] = field(default_factory=list)
    failed_without_cause: list[str] = field(default_factory=list)
    foreign_keys: list[str] = field(default_factory=list)
    placed_but_failed: list[str] = field(default_factory=list)
    placed_but_cancelled: list[str] = field(default_factory=list)
    failure_causes: Counter[str] = field(default_factory=Counter)
    seconds_to_quiescence: float = 0.0
    seconds_total: float = 0.0

    @property
    def ok(self) -> bool:
        return not (
            self.duplicates
            or self.stuck
            or self.wrong_session
            or self.dispatched_without_call
            or self.failed_without_cause
            or self.foreign_keys
        )

    def render(self) -> str:
        def few(ids: list[str]) -> str:
            return f"{len(ids)}" + (f"  e.g. {', '.join(ids[:5])}" if ids else "")

        lines = [
            "chaos harness report",
            f"  callbacks              {self.callbacks}",
            f"  final states           {dict(sorted(self.by_status.items()))}",
            f"  faults injected        {dict(sorted(self.faults.items()))}",
            f"  provider requests      {self.requests} (answers to new keys: "
            f"{dict(sorted(self.answers.items()))})",
            f"  calls placed           {self.placed_calls}",
            f"  cancels                {dict(sorted(self.cancels.items()))}",
            f"  duplicates             {few(sorted(self.duplicates))}",
            f"  stuck                  {few(self.stuck)}",
            f"  wrong sessionId        {few(self.wrong_session)}",
            f"  dispatched, no call    {few(self.dispatched_without_call)}",
            f"  failed, no cause       {few(self.failed_without_cause)}",
            f"  dialed with other key  {few(self.foreign_keys)}",
            f"  (info) failed although a call was placed     {few(self.placed_but_failed)}",
            f"  (info) cancelled although a call was placed  {few(self.placed_but_cancelled)}",
            "  failure causes         "
            + "; ".join(f"{n}x {c}" for c, n in self.failure_causes.most_common(6)),
            f"  seconds to quiescence  {self.seconds_to_quiescence:.1f} (after faults stopped)",
            f"  seconds in all         {self.seconds_total:.1f}",
            f"  verdict                {'OK' if self.ok else 'FAILED'}",
        ]
        return "\n".join(lines)


class ChaosProvider:
    """The provider's behaviour for new keys: a share 503, a share 400, a share hangs
    past the dialer timeout after placing the call, the rest placed at once."""

    def __init__(self, config: ChaosConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self._lock = threading.Lock()

    def __call__(self, req: Received) -> Reply:
        if not callback_id_of(req):
            # A body cut short (its worker SIGKILLed mid-send) is no request: a real
            # provider answers 400 and places nothing, and so does this one.
            return Reply(400, {"error": "chaos: malformed body", "code": "VALIDATION_ERROR"})
        with self._lock:
            r = self.rng.random()
        c = self.config
        if r < c.share_503:
            return Reply(503, {"error": "chaos: overloaded", "code": "UNAVAILABLE"})
        if r < c.share_503 + c.share_400:
            return Reply(400, {"error": "chaos: invalid request", "code": "VALIDATION_ERROR"})
        if r < c.share_503 + c.share_400 + c.share_hang:
            return Reply(200, delay=c.hang_seconds, places_call=True)
        return Reply(200)


@dataclass(frozen=True)
class Servers:
    """The servers a chaos run owns and may break."""

    redis: PrivateRedis
    cluster: PrivateCluster | None = None
    """Needed for database restarts and stops; ``pg_url`` must be a database in it."""


def run_chaos(config: ChaosConfig, pg_url: str, workdir: Path, servers: Servers) -> ChaosReport:
    if (config.db_restarts or config.db_stops) and servers.cluster is None:
        raise ValueError("database restarts and stops need a private cluster")
    began = time.monotonic()
    rng = random.Random(config.seed)
    ledger = CallLedger(ChaosProvider(config, random.Random(config.seed + 1)))
    provider = Provider(ledger)
    # A worker SIGKILLed mid-request resets its connection: expected here, not news.
    provider._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
    provider.start()
    engine = make_engine(_with_app_name(pg_url), pool_size=4)
    sessions = make_sessions(engine)
    report = ChaosReport(callbacks=config.callbacks)
    try:
        broker_url = servers.redis.url(0)
        broker = redis.Redis.from_url(broker_url)
        broker.flushdb()
        broker.close()
        env = worker_env(
            pg_url,
            broker_url,
            provider,
            workdir,
            UNKNOWN_OUTCOME_POLICY=config.policy,
            WORKER_CONCURRENCY=str(config.concurrency),
            CLAIM_LEASE="10",
        )
        orgs = _schedule(sessions, config)
        ids = list(orgs)
        with processes(workdir, env) as procs:
            sup = Supervisor(procs)
            for i in range(config.beats):
                sup.start(f"beat{i + 1}", "celery", "-A", "worker", "beat")
            workers = [f"worker{i + 1}" for i in range(config.workers)]
            for name in workers:
                sup.start(name, "celery", "-A", "worker", "worker", "-n", f"chaos-{name}@%h")
            _inject(config, rng, sup, workers, sessions, pg_url, ids, orgs, report, servers)
            faults_over = time.monotonic()
            deadline = faults_over + config.quiesce_timeout
            while time.monotonic() < deadline:
                sup.ensure_running()
                if _settled(sessions):
                    break
                time.sleep(0.5)
            report.seconds_to_quiescence = time.monotonic() - faults_over
            time.sleep(config.hang_seconds + 1)  # hanging answers finish; nothing new starts
            report.faults["worker exited on its own"] = len(sup.exited_on_their_own())
        _check(report, sessions, provider, ledger)
    finally:
        provider.stop()
        engine.dispose()
    report.seconds_total = time.monotonic() - began
    return report


def _settled(sessions: sessionmaker[Session]) -> bool:
    try:
        return unfinished(sessions) == 0
    except DBAPIError:  # our own pooled connection, ended by a database restart
        return False


def _with_app_name(url: str) -> str:
    return url + ("&" if "?" in url else "?") + f"application_name={HARNESS_APP}"


def _schedule(sessions: sessionmaker[Session], config: ChaosConfig) -> dict[str, str]:
    """Callbacks spread over organizations and over time; returns id -> organization."""
    per_org = -(-config.callbacks // config.orgs)
    start = datetime.now(UTC) + timedelta(seconds=2)
    spread = timedelta(seconds=config.fault_seconds * config.spread)
    orgs: dict[str, str] = {}
    for i in range(config.orgs):
        org = f"org_chaos_{i}"
        n = min(per_org, config.callbacks - len(orgs))
        created = schedule_callbacks(sessions, n, start=start, spread=spread, org=org)
        orgs.update((cid, org) for cid in created)
    return orgs


def _inject(
    config: ChaosConfig,
    rng: random.Random,
    sup: Supervisor,
    workers: list[str],
    sessions: sessionmaker[Session],
    pg_url: str,
    ids: list[str],
    orgs: dict[str, str],
    report: ChaosReport,
    servers: Servers,
) -> None:
    """Until the fault window closes: kill, restart, terminate, cancel, at random times."""
    start = time.monotonic()
    end = start + config.fault_seconds
    next_kill = start + rng.expovariate(1 / config.kill_every)
    next_db_kill = start + rng.expovariate(1 / config.db_kill_every)
    redis_at = sorted(
        start + config.fault_seconds * rng.uniform(0.25, 0.75) for _ in range(config.redis_restarts)
    )
    # Database faults in the first half, while callbacks still come due; a stop ends
    # before the window closes, so the run measures recovery, not the outage.
    db_faults = sorted(
        [
            (start + config.fault_seconds * rng.uniform(0.1, 0.4), "restart")
            for _ in range(config.db_restarts)
        ]
        + [
            (start + config.fault_seconds * rng.uniform(0.1, 0.3), "stop")
            for _ in range(config.db_stops)
        ]
    )
    db_down_until: float | None = None
    to_cancel = rng.sample(ids, int(len(ids) * config.cancel_share))
    cancel_at = sorted(
        (start + rng.uniform(0, config.fault_seconds * config.spread), cid) for cid in to_cancel
    )
    restart_after: dict[str, float] = {}
    while (now := time.monotonic()) < end:
        if now >= next_kill:
            victim = rng.choice(workers)
            sup.kill(victim)
            report.faults["worker SIGKILL"] += 1
            restart_after[victim] = now + rng.uniform(0.2, 3.0)
            next_kill = now + rng.expovariate(1 / config.kill_every)
        cluster = servers.cluster
        if db_down_until is not None and now >= db_down_until and cluster is not None:
            cluster.start()
            db_down_until = None
        if db_faults and now >= db_faults[0][0] and db_down_until is None and cluster:
            _, what = db_faults.pop(0)
            if what == "restart":
                cluster.restart()
                report.faults["db server restart"] += 1
            else:
                cluster.stop()
                report.faults[f"db server stopped {config.db_stop_seconds:g}s"] += 1
                db_down_until = now + config.db_stop_seconds
        if now >= next_db_kill and db_down_until is None:
            try:
                report.faults["db connections terminated"] += terminate_backends(
                    pg_url, spare=(HARNESS_APP,)
                )
                report.faults["db terminate rounds"] += 1
            except psycopg.OperationalError:
                pass  # the server is restarting: that is a fault enough
            next_db_kill = now + rng.expovariate(1 / config.db_kill_every)
        if redis_at and now >= redis_at[0]:
            redis_at.pop(0)
            servers.redis.restart(down_for=rng.uniform(0.5, 2.0))
            report.faults["redis restart (queue lost)"] += 1
        while cancel_at and now >= cancel_at[0][0] and db_down_until is None:
            _, cid = cancel_at.pop(0)
            report.cancels[_cancel(sessions, cid, orgs[cid])] += 1
        # The supervisor restarts what died: at once, except a killed worker's own delay.
        for name in [n for n, at in restart_after.items() if now >= at]:
            del restart_after[name]
        sup.ensure_running(skip=set(restart_after))
        time.sleep(0.1)
    if db_down_until is not None and servers.cluster is not None:
        servers.cluster.start()
    sup.ensure_running()


def _cancel(sessions: sessionmaker[Session], cid: str, org: str) -> str:
    try:
        with sessions.begin() as session:
            cancel(
                session, org, cid, now=datetime.now(UTC), actor="api:chaos", reason="chaos cancel"
            )
    except StatusConflict:
        return "too late (not scheduled)"
    except CallbackNotFound:
        return "not found"
    except Exception as exc:  # a terminated connection of ours would land here
        return f"error {type(exc).__name__}"
    return "cancelled"


def _check(
    report: ChaosReport,
    sessions: sessionmaker[Session],
    provider: Provider,
    ledger: CallLedger,
) -> None:
    found = rows(sessions)
    report.by_status = {str(s): n for s, n in count_by_status(sessions).items()}
    report.requests = len(provider.requests)
    report.answers = Counter(ledger.answers)
    report.placed_calls = sum(len(keys) for keys in ledger.placed.values())
    report.duplicates = ledger.duplicates()
    for cid, cb in sorted(found.items()):
        calls = ledger.calls_for(cid)
        if cb.status not in (Status.DISPATCHED, Status.FAILED, Status.CANCELLED):
            report.stuck.append(cid)
        if any(key != cb.idempotency_key for key in calls):
            report.foreign_keys.append(cid)
        if cb.status is Status.DISPATCHED:
            if not calls:
                report.dispatched_without_call.append(cid)
            elif cb.created_session_id != provider.calls.get(calls[0]):
                report.wrong_session.append(cid)
        if cb.status is Status.FAILED:
            if not cb.failure_cause:
                report.failed_without_cause.append(cid)
            else:
                report.failure_causes[_cause_kind(cb.failure_cause)] += 1
            if calls:
                report.placed_but_failed.append(cid)
        if cb.status is Status.CANCELLED and calls:
            report.placed_but_cancelled.append(cid)
    unknown = set(requests_per_callback(provider)) - set(found) - {""}
    report.foreign_keys += sorted(unknown)


def _cause_kind(cause: str) -> str:
    if cause.startswith("gave up"):
        return "gave up after retries (" + cause.rsplit("#", 1)[-1][:60].strip(" )") + ")"
    return cause[:70]


def expected_quiescence(config: ChaosConfig) -> float:
    """Worst case after the faults stop: an attempt stranded at the last kill."""
    env = {"DIALER_CONNECT_TIMEOUT": "0.5", "DIALER_READ_TIMEOUT": "1"}
    return attempt_lease(env) + 30
