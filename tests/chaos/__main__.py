"""``python -m tests.chaos``: run the chaos harness once on a fresh PostgreSQL database.

Runs on servers of its own, so it can break them: a private ``redis-server`` and a private
PostgreSQL cluster (initdb into a temporary directory, as the ``postgres`` user when run
as root), both on free ports and removed after. Nobody else's server is touched.
Exit status 0 when no callback was placed twice and none is
stranded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.chaos.harness import ChaosConfig, Servers, run_chaos
from tests.support.databases import sqlalchemy_url
from tests.support.faults import private_cluster, private_redis
from worker.db.migrate import upgrade


def parse(argv: list[str]) -> tuple[ChaosConfig, Path | None]:
    d = ChaosConfig()
    p = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    p.add_argument("--callbacks", type=int, default=d.callbacks)
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--beats", type=int, default=d.beats)
    p.add_argument("--fault-seconds", type=float, default=d.fault_seconds)
    p.add_argument("--spread", type=float, default=d.spread, help="share of the fault window")
    p.add_argument("--kill-every", type=float, default=d.kill_every, help="mean seconds")
    p.add_argument("--db-kill-every", type=float, default=d.db_kill_every, help="mean seconds")
    p.add_argument("--redis-restarts", type=int, default=d.redis_restarts)
    p.add_argument("--db-restarts", type=int, default=1, help="database server restarts")
    p.add_argument("--db-stops", type=int, default=1, help="database server stops")
    p.add_argument("--db-stop-seconds", type=float, default=60.0)
    p.add_argument("--share-503", type=float, default=d.share_503)
    p.add_argument("--share-400", type=float, default=d.share_400)
    p.add_argument("--share-hang", type=float, default=d.share_hang)
    p.add_argument("--cancel-share", type=float, default=d.cancel_share)
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="threads per worker")
    p.add_argument("--orgs", type=int, default=d.orgs)
    p.add_argument("--policy", choices=["fail", "redial-same-key"], default=d.policy)
    p.add_argument("--quiesce-timeout", type=float, default=d.quiesce_timeout)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workdir", type=Path, default=None, help="keep process logs here")
    a = p.parse_args(argv)
    config = ChaosConfig(
        callbacks=a.callbacks,
        workers=a.workers,
        beats=a.beats,
        fault_seconds=a.fault_seconds,
        spread=a.spread,
        kill_every=a.kill_every,
        db_kill_every=a.db_kill_every,
        redis_restarts=a.redis_restarts,
        db_restarts=a.db_restarts,
        db_stops=a.db_stops,
        db_stop_seconds=a.db_stop_seconds,
        share_503=a.share_503,
        share_400=a.share_400,
        share_hang=a.share_hang,
        cancel_share=a.cancel_share,
        concurrency=a.concurrency,
        orgs=a.orgs,
        policy=a.policy,
        quiesce_timeout=a.quiesce_timeout,
        seed=a.seed,
    )
    return config, a.workdir


def main(argv: list[str] | None = None) -> int:
    config, workdir = parse(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        logs = workdir or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        print(f"chaos: {config}\nchaos: process logs in {logs}", flush=True)
        root = Path(tmp)
        with private_redis(root / "redis") as redis, private_cluster() as cluster:
            url = sqlalchemy_url(cluster.create_database("callbacks_chaos"))
            upgrade(url)
            report = run_chaos(config, url, logs, Servers(redis, cluster))
        print(report.render(), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
