"""The drain, this tree against another checkout's code, run for run in turn (A/B).

``python -m tests.perf.bench_drain_ab --baseline /work/main [--count 5000] [--delay 0.05]
[--runs 3]``: each run drains the same backlog with this tree's worker and beat, then with
the other checkout's (its ``worker`` package first on PYTHONPATH, the schema set back to
its head for that run), so both see the same load on a shared machine; the ratio is per
pair. What issue 13 asked of backpressure: the drain's rate must not drop.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alembic import command

from tests.perf.bench_drain import drain_ours
from tests.perf.bench_fairness import their_head
from tests.perf.common import Figure, Results, Stat, bench_database, load1, machine_meta
from tests.perf.stand_in import running_stand_in
from worker.db.migrate import alembic_config, upgrade


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.perf.bench_drain_ab")
    parser.add_argument("--baseline", type=Path, required=True, help="the other checkout")
    parser.add_argument("--count", type=int, default=5_000)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = Results({**machine_meta(), "args": vars(args)})
    ours: list[float] = []
    theirs: list[float] = []
    before = load1()
    with running_stand_in() as stand_in, bench_database() as (url, engine):
        for i in range(args.runs):
            upgrade(url)
            mine = drain_ours(engine, url, stand_in, count=args.count, delay=args.delay)
            command.downgrade(alembic_config(url), their_head(args.baseline))
            base = drain_ours(
                engine,
                url,
                stand_in,
                count=args.count,
                delay=args.delay,
                overrides={"PYTHONPATH": str(args.baseline)},
            )
            for run in (mine, base):
                assert run.provider["duplicates"] == 0, run.provider
            ours.append(mine.rate)
            theirs.append(base.rate)
            print(
                f"   run {i + 1}: this tree {mine.rate:.0f}/s, {args.baseline} {base.rate:.0f}/s",
                flush=True,
            )
    results.add(
        Figure(
            "drain",
            f"{args.count:,} callbacks, provider {args.delay * 1000:.0f} ms, A/B in turn",
            "cb/s",
            Stat.of(ours),
            baseline=Stat.of(theirs),
            baseline_name=f"{args.baseline} code",
            ratio=Stat.of([a / b for a, b in zip(ours, theirs, strict=True)]),
            target=">= 1.0x (must not drop)",
            load=(before, load1()),
        )
    )
    print("\n" + results.table())
    if args.out:
        results.write(args.out)


if __name__ == "__main__":
    main()
