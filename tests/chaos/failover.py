"""``python -m tests.chaos.failover``: the database server restarted or stopped mid-drain.

Issue 17's scenario, on servers of its own (a private PostgreSQL cluster and Redis,
tests.support.faults): N past-due callbacks (3,000), one ``celery -A worker worker`` and
one ``celery -A worker beat`` with the product's default leases, a provider stand-in
answering in 50 ms and honouring idempotency keys, and ``callbacks api``. A few seconds
into the drain the server is restarted (``pg_ctl restart -m fast``) or stopped for
``--down`` seconds. Measured: how long after the server accepts connections again the
first new call is dialed, duplicates, callbacks left unfinished, calls the provider placed
that ended ``failed``, the drain's length, and what the API's first requests after the
fault answered. Exit status 0 when the issue's targets are met.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import httpx
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from tests.support.databases import sqlalchemy_url
from tests.support.faults import PrivateCluster, free_port, private_cluster, private_redis
from tests.support.ledger import CallLedger
from tests.support.processes import Processes, pipeline_env, processes, wait_until
from tests.support.provider import Provider, Reply
from tests.support.scenario import count_by_status, rows, schedule_callbacks, unfinished
from worker.db.engine import make_engine, make_sessions
from worker.db.migrate import upgrade
from worker.status import Status

RESUME_TARGET = 10.0


@dataclass
class FailoverReport:
    fault: str
    callbacks: int
    fault_at: float = 0.0
    """Seconds after the first dial."""
    down_seconds: float = 0.0
    resumed_after: float | None = None
    """Seconds from the server accepting connections to the next new dial."""
    longest_pause: float = 0.0
    """The longest time without a dial from the server's return to the drain's end: a
    batch held until a lease shows up here even when other dials went on."""
    drain_seconds: float = 0.0
    duplicates: int = 0
    stuck: int = 0
    placed_but_failed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    api_first: list[int] = field(default_factory=list)
    api_retry_after: list[str | None] = field(default_factory=list)
    failure_causes: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return (
            self.resumed_after is not None
            and self.resumed_after <= RESUME_TARGET
            and self.longest_pause <= RESUME_TARGET
            and self.duplicates == 0
            and self.stuck == 0
            and self.placed_but_failed == 0
            and all(s == 200 for s in self.api_first)
        )

    def render(self) -> str:
        resumed = "never" if self.resumed_after is None else f"{self.resumed_after:.1f}s"
        return "\n".join(
            [
                f"failover: {self.fault}",
                f"  callbacks                   {self.callbacks}",
                f"  fault                       {self.fault_at:.1f}s into the drain, "
                f"server down {self.down_seconds:.1f}s",
                f"  dialing resumed             {resumed} after the server accepted connections",
                f"  longest pause in dialing    {self.longest_pause:.1f}s after it was back",
                f"  drain                       {self.drain_seconds:.1f}s",
                f"  duplicates                  {self.duplicates}",
                f"  stuck                       {self.stuck}",
                f"  placed but recorded failed  {self.placed_but_failed}",
                f"  final states                {self.by_status}",
                f"  failure causes              {dict(self.failure_causes)}",
                f"  API first requests after    {self.api_first} "
                f"(Retry-After on 503s: {self.api_retry_after})",
                f"  verdict                     {'OK' if self.ok else 'FAILED'}",
            ]
        )


def run_failover(
    fault: str,
    down: float,
    callbacks: int,
    fault_after: float,
    policy: str,
    workdir: Path,
    code: Path | None = None,
) -> FailoverReport:
    report = FailoverReport(fault=fault, callbacks=callbacks)
    with private_redis(workdir / "redis") as redis, private_cluster() as cluster:
        url = sqlalchemy_url(cluster.create_database("callbacks_failover"))
        upgrade(url)
        engine = make_engine(url, pool_size=2)
        sessions = make_sessions(engine)
        ledger = CallLedger(lambda req: Reply(200, delay=0.05))
        provider = Provider(ledger).start()
        try:
            env = pipeline_env(
                url,
                redis.url(0),
                provider,
                workdir,
                LOG_LEVEL="INFO",
                UNKNOWN_OUTCOME_POLICY=policy,
            )
            if code is not None:  # measure another checkout's worker, beat and api
                env["PYTHONPATH"] = str(code)
            ids = schedule_callbacks(sessions, callbacks)
            port = free_port()
            with processes(workdir, env) as procs:
                token = _api_key(procs)
                procs.start("api", "callbacks", "api", "--host", "127.0.0.1", "--port", str(port))
                api = httpx.Client(
                    base_url=f"http://127.0.0.1:{port}",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=10,
                )
                wait_until(lambda: _api_status(api) == 200, timeout=60, what="the API")
                for _ in range(8):  # pooled connections, which the fault will kill
                    _api_status(api)
                procs.start("worker", "celery", "-A", "worker", "worker", "-n", "failover@%h")
                procs.start("beat", "celery", "-A", "worker", "beat")
                wait_until(lambda: bool(provider.requests), timeout=120, what="the first dial")
                first_dial = provider.requests[0].at
                while time.time() < first_dial + fault_after:
                    time.sleep(0.05)
                report.fault_at = time.time() - first_dial
                if unfinished(sessions, ids) == 0:
                    # Nothing left for the fault to interrupt: it would measure nothing.
                    raise SystemExit(
                        f"the drain of {callbacks} ended before the fault at "
                        f"{report.fault_at:.1f}s: raise --callbacks or lower --fault-after"
                    )
                went_down = time.time()
                _break(cluster, fault, down)
                back = time.time()
                report.down_seconds = back - went_down
                _api_after(api, report)
                report.resumed_after = _resumed(provider, back)
                sessions_ok = _await_drain(sessions, ids, timeout=600)
                report.drain_seconds = _last_dial(provider) - first_dial
                report.longest_pause = _longest_pause(provider, back)
                if not sessions_ok:
                    print(procs.log("worker")[-3000:], file=sys.stderr)
                api.close()
            _check(report, sessions, ledger, ids)
        finally:
            provider.stop()
            engine.dispose()
    return report


def _api_key(procs: Processes) -> str:
    done = procs.run("callbacks", "api-key", "create", "--org", "org_crash")
    return done.stdout.decode().strip()


def _api_status(api: httpx.Client) -> int:
    try:
        return api.get("/v1/callbacks", params={"limit": 5}).status_code
    except httpx.TransportError:
        return 0


def _break(cluster: PrivateCluster, fault: str, down: float) -> None:
    if fault == "none":  # the undisturbed drain, for comparison
        return
    if fault == "restart":
        cluster.restart()
    else:
        cluster.stop()
        time.sleep(down)
        cluster.start()


def _api_after(api: httpx.Client, report: FailoverReport) -> None:
    """The API's first requests once the server is back: a list and a get, a few times."""
    for _ in range(3):
        response = api.get("/v1/callbacks", params={"limit": 5})
        report.api_first.append(response.status_code)
        report.api_retry_after.append(response.headers.get("retry-after"))
        if response.status_code == 200 and response.json().get("callbacks"):
            cid = response.json()["callbacks"][0]["id"]
            got = api.get(f"/v1/callbacks/{cid}")
            report.api_first.append(got.status_code)
            report.api_retry_after.append(got.headers.get("retry-after"))


def _resumed(provider: Provider, back: float, timeout: float = 400) -> float | None:
    """Seconds from ``back`` to the first dial request received after it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        after = [r.at for r in list(provider.requests) if r.at >= back]
        if after:
            return min(after) - back
        time.sleep(0.05)
    return None


def _await_drain(sessions: sessionmaker[Session], ids: list[str], timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if unfinished(sessions, ids) == 0:
                return True
        except DBAPIError:
            sessions.kw["bind"].dispose()  # our own pooled connections, ended by the fault
        time.sleep(0.5)
    return False


def _longest_pause(provider: Provider, since: float) -> float:
    times = sorted([since] + [r.at for r in provider.requests if r.at >= since])
    return max((b - a for a, b in pairwise(times)), default=0.0)


def _last_dial(provider: Provider) -> float:
    return max(r.at for r in provider.requests)


def _check(
    report: FailoverReport, sessions: sessionmaker[Session], ledger: CallLedger, ids: list[str]
) -> None:
    found = rows(sessions, ids)
    report.by_status = {str(s): n for s, n in count_by_status(sessions).items()}
    report.duplicates = len(ledger.duplicates())
    for cid, cb in found.items():
        if cb.status not in (Status.DISPATCHED, Status.FAILED, Status.CANCELLED):
            report.stuck += 1
        if cb.status is Status.FAILED:
            report.failure_causes[(cb.failure_cause or "")[:60]] += 1
            if ledger.calls_for(cid):
                report.placed_but_failed += 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.chaos.failover", description=__doc__)
    p.add_argument("--fault", choices=["restart", "stop", "none"], default="restart")
    p.add_argument("--down", type=float, default=60.0, help="seconds stopped (--fault stop)")
    p.add_argument("--callbacks", type=int, default=3000)
    p.add_argument("--fault-after", type=float, default=3.0, help="seconds after the 1st dial")
    p.add_argument("--policy", choices=["fail", "redial-same-key"], default="fail")
    p.add_argument("--workdir", type=Path, default=None, help="keep process logs here")
    p.add_argument(
        "--code", type=Path, default=None, help="run the processes from this source tree"
    )
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="failover-") as tmp:
        workdir = a.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        report = run_failover(
            a.fault, a.down, a.callbacks, a.fault_after, a.policy, workdir, a.code
        )
    print(report.render(), flush=True)
    print(json.dumps({"resumed_after": report.resumed_after, "ok": report.ok}))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
