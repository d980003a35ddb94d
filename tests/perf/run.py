"""The benchmark suite, one command: ``python -m tests.perf [--quick] [--only GROUP ...]``.

Prints one table (median of several runs with min-max, the baseline measured in the same
run, the ratio, the target from issue 7, and the 1-minute load average before and after)
and writes it with every run's numbers to ``perf-results-<time>.json`` (gitignored).

Groups: http (client choice), claim, poll (poll cost vs size and churn), drain, lag,
memory, peers, fairness (issue 13: another organization's callbacks and manual dispatches
beside one organization's draining backlog; ``--fair-baseline DIR`` runs the same against
another checkout's code, e.g. main, as the baseline). ``--quick`` runs all of them at
reduced sizes in a few minutes; the default sizes are issue 7's (20,000-callback drains,
10 million rows: expect an hour or more). Every size is a flag. Environment overrides of
the worker's settings (WORKER_CONCURRENCY, WORKER_POOL, POLL_BATCH_SIZE, POLL_MAX_PER_TICK,
CLAIM_WINDOW, LOG_LEVEL) reach the worker under test.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from tests.perf import bench_claim, bench_drain, bench_fairness, bench_http_clients, bench_peers
from tests.perf.common import ROOT, Results, bench_database, machine_meta
from tests.perf.profile_report import summarize
from tests.perf.stand_in import running_stand_in

GROUPS = ("http", "claim", "poll", "drain", "lag", "memory", "peers", "fairness")

QUICK = {
    "http_seconds": 3.0,
    "claim_rows": 5_000,
    "poll_sizes": [10_000, 300_000],
    "churn": 20_000,
    "polls": 100,
    "drain": [1_000],
    "lag_seconds": 15,
    "memory_backlog": 5_000,
    "peer_count": 1_000,
    "runs": 2,
    "fair_backlogs": [20_000],
    "fair_manual": 5,
}
FULL = {
    "http_seconds": 10.0,
    "claim_rows": 100_000,
    "poll_sizes": [10_000, 1_000_000, 10_000_000],
    "churn": 100_000,
    "polls": 200,
    "drain": [20_000],
    "lag_seconds": 60,
    "memory_backlog": 100_000,
    "peer_count": 20_000,
    "runs": 3,
    "fair_backlogs": [20_000, 100_000],
    "fair_manual": 10,
}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.perf", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="reduced sizes, a few minutes")
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS))
    parser.add_argument("--runs", type=int, help="runs per figure")
    parser.add_argument("--http-threads", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--http-seconds", type=float)
    parser.add_argument("--claim-rows", type=int)
    parser.add_argument("--claim-batch", type=int, default=100)
    parser.add_argument("--poll-sizes", type=int, nargs="+")
    parser.add_argument("--churn", type=int, help="drain size for the churn polls (0: skip)")
    parser.add_argument("--polls", type=int, help="empty polls per run")
    parser.add_argument(
        "--drain", type=int, nargs="+", help="past-due callbacks per drain (one or more sizes)"
    )
    parser.add_argument("--delays", type=float, nargs="+", default=[0.2, 0.0], help="seconds")
    parser.add_argument("--lag-rate", type=int, default=200, help="callbacks/s coming due")
    parser.add_argument("--lag-seconds", type=int)
    parser.add_argument("--lag-delay", type=float, default=0.2)
    parser.add_argument("--memory-backlog", type=int)
    parser.add_argument("--peer-count", type=int)
    parser.add_argument("--peer-runs", type=int)
    parser.add_argument("--fair-backlogs", type=int, nargs="+")
    parser.add_argument("--fair-arrivals", type=int, default=20)
    parser.add_argument("--fair-manual", type=int, help="API and Celery dispatches each")
    parser.add_argument("--fair-delay", type=float, default=0.05)
    parser.add_argument("--fair-baseline", type=Path, help="checkout to compare with (main)")
    parser.add_argument("--profile", action="store_true", help="py-spy the first drain run")
    parser.add_argument("--out", type=Path, help="JSON file (default perf-results-<time>.json)")
    args = parser.parse_args()
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.peer_runs is None:
        args.peer_runs = 1 if args.quick else 2
    return args


def main() -> None:
    args = parse()
    overrides = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(("WORKER_", "POLL_", "LOG_LEVEL", "DIALER_", "CLAIM_"))
    }
    results = Results({**machine_meta(), "args": vars(args), "env_overrides": overrides})
    out = args.out or ROOT / f"perf-results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    profile_dir = ROOT / "perf-profile" if args.profile else None
    if profile_dir:
        profile_dir.mkdir(exist_ok=True)
    began = time.monotonic()
    try:
        if "http" in args.only:
            bench_http_clients.run(
                results,
                threads=args.http_threads,
                seconds=args.http_seconds,
                runs=args.runs,
                delay=0.05,
            )
        if "claim" in args.only:
            bench_claim.run_claim(
                results, rows=args.claim_rows, batch=args.claim_batch, runs=args.runs
            )
        if "poll" in args.only:
            bench_claim.run_poll_cost(
                results, sizes=args.poll_sizes, churn=args.churn, runs=args.runs, polls=args.polls
            )
        live = {"drain", "lag", "memory", "peers", "fairness"} & set(args.only)
        if live:
            with running_stand_in() as stand_in, bench_database() as (url, engine):
                ours: dict[float, list[bench_drain.DrainRun]] = {}
                by_count: dict[int, dict[float, list[bench_drain.DrainRun]]] = {}
                if {"drain", "peers"} & live:
                    for count in args.drain:
                        by_count[count] = bench_drain.run_drain(
                            results,
                            engine,
                            url,
                            stand_in,
                            count=count,
                            delays=args.delays,
                            runs=args.runs,
                            profile_dir=profile_dir,
                        )
                if "lag" in live:
                    bench_drain.run_lag(
                        results,
                        engine,
                        url,
                        stand_in,
                        rate=args.lag_rate,
                        seconds=args.lag_seconds,
                        delay=args.lag_delay,
                        runs=1 if args.quick else args.runs,
                    )
                if "fairness" in live:
                    bench_fairness.run_fairness(
                        results,
                        engine,
                        url,
                        stand_in,
                        backlogs=args.fair_backlogs,
                        arrivals=args.fair_arrivals,
                        manual=args.fair_manual,
                        delay=args.fair_delay,
                        every=0.5,
                        baseline_root=args.fair_baseline,
                    )
                if "memory" in live:
                    bench_drain.run_memory(
                        results, engine, url, stand_in, count=args.memory_backlog
                    )
                if "peers" in live:
                    ours = by_count.get(args.peer_count, {})
                    if not ours:
                        ours = bench_drain.run_drain(
                            results,
                            engine,
                            url,
                            stand_in,
                            count=args.peer_count,
                            delays=args.delays,
                            runs=args.peer_runs,
                            profile_dir=None,
                        )
                    bench_peers.run_peers(
                        results,
                        engine,
                        url,
                        stand_in,
                        count=args.peer_count,
                        runs=args.peer_runs,
                        ours_by_delay=ours,
                    )
    finally:
        results.meta["minutes"] = round((time.monotonic() - began) / 60, 1)
        results.meta["load_at_end"] = os.getloadavg()
        results.write(out)
        print("\n" + results.table())
        print(f"\n{len(results.figures)} figures in {results.meta['minutes']} min -> {out}")
        if profile_dir:
            for raw in sorted(profile_dir.glob("*.raw")):
                print("\n" + summarize(raw, top=12))


if __name__ == "__main__":
    main()
