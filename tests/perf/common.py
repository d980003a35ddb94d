"""Shared pieces of the benchmark suite: figures, the results table, databases, processes.

Every figure is the median of several runs with their min-max, next to a baseline measured
in the same run and the ratio of the two. Load on the machine (other engineers' tests,
PostgreSQL, Redis) is recorded with each figure: this is a shared 2-core box.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis
from sqlalchemy import Engine, text

from tests.support.databases import fresh_postgres_database, sqlalchemy_url
from worker.db.engine import make_engine
from worker.db.migrate import upgrade

# Redis database of the suite's own (12 and 13 belong to the test suite); flushed per run.
PERF_REDIS_URL = os.environ.get("PERF_REDIS_URL", "redis://127.0.0.1:6379/11")
API_KEY = "sk_perf_key"
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Stat:
    median: float
    low: float
    high: float
    runs: list[float]

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        if not values:
            raise ValueError("no runs")
        return cls(statistics.median(values), min(values), max(values), list(values))

    def show(self, digits: int = 1) -> str:
        if len(self.runs) == 1:
            return f"{self.median:,.{digits}f}"
        return f"{self.median:,.{digits}f} ({self.low:,.{digits}f}-{self.high:,.{digits}f})"


@dataclass
class Figure:
    group: str
    name: str
    unit: str
    value: Stat
    baseline: Stat | None = None
    baseline_name: str = ""
    ratio: Stat | None = None
    target: str = ""
    load: tuple[float, float] = (0.0, 0.0)
    """1-minute load average before and after the measurement."""
    notes: dict[str, Any] = field(default_factory=dict)


class Results:
    def __init__(self, meta: Mapping[str, Any]) -> None:
        self.meta = dict(meta)
        self.figures: list[Figure] = []

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(f"  -> {_row(figure)}", flush=True)
        return figure

    def table(self) -> str:
        header = ("figure", "value", "baseline", "ratio", "target", "load")
        rows = [header] + [_cells(f) for f in self.figures]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def write(self, path: Path) -> None:
        doc = {"meta": self.meta, "figures": [asdict(f) for f in self.figures]}
        path.write_text(json.dumps(doc, indent=2, default=str) + "\n")


def _digits(unit: str) -> int:
    return 2 if unit in {"ms", "s", "x"} else 0 if unit in {"rows/s", "req/s", "MiB"} else 1


def _cells(f: Figure) -> tuple[str, str, str, str, str, str]:
    d = _digits(f.unit)
    base = f"{f.baseline_name}: {f.baseline.show(d)}" if f.baseline else f.baseline_name
    ratio = f"{f.ratio.show(2)}x" if f.ratio else ""
    return (
        f"{f.group}: {f.name}",
        f"{f.value.show(d)} {f.unit}",
        base,
        ratio,
        f.target,
        f"{f.load[0]:.1f}->{f.load[1]:.1f}",
    )


def _row(f: Figure) -> str:
    cells = _cells(f)
    return " | ".join(c for c in cells if c)


def load1() -> float:
    return os.getloadavg()[0]


def machine_meta() -> dict[str, Any]:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "worker"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip()
        )
    except OSError:
        rev, dirty = "", False
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "git": rev + ("+dirty worker/" if dirty else ""),
        "load_at_start": os.getloadavg(),
    }


# --- databases -------------------------------------------------------------------------


@contextmanager
def bench_database(prefix: str = "callbacks_perf") -> Iterator[tuple[str, Engine]]:
    """A fresh database migrated with the real migrations: (SQLAlchemy URL, engine). Dropped."""
    with fresh_postgres_database(prefix) as libpq_url:
        url = sqlalchemy_url(libpq_url)
        upgrade(url)
        engine = make_engine(url, pool_size=4)
        try:
            yield url, engine
        finally:
            engine.dispose()


# One INSERT ... SELECT generate_series: no ORM, no Python per row. Ids sort with i.
FILL_CALLBACKS = """
INSERT INTO callbacks (
    id, organization_id, source_session_id, agent_id, to_number, from_number, scheduled_at,
    status, reason, pipeline_config, metadata, created_at, updated_at, due_at, attempts,
    attempt_in_flight, dispatch_round, dispatched_at, created_session_id
)
SELECT
    :prefix || lpad(i::text, 12, '0'),
    'org_' || (i % 10),
    'sess_src_' || i,
    'agent_1',
    '+1201555' || lpad((i % 10000)::text, 4, '0'),
    '+12015550000',
    w.at, s.status,
    'perf', '{}'::jsonb, jsonb_build_object('n', i),
    now(), now(), w.at,
    CASE WHEN s.status = 'scheduled' THEN 0 ELSE 1 END,
    false, 1,
    CASE WHEN s.status = 'dispatched' THEN w.at END,
    CASE WHEN s.status = 'dispatched' THEN 'sess_new_' || i END
FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS i,
LATERAL (
    SELECT :start + make_interval(secs => (i - :first) * CAST(:step AS double precision)) AS at
) AS w,
LATERAL (SELECT CASE
    WHEN (i % 1000) < CAST(:scheduled_per_mille AS integer) THEN 'scheduled'
    WHEN (i % 100) < 80 THEN 'dispatched'
    WHEN (i % 100) < 92 THEN 'cancelled'
    ELSE 'failed' END AS status
) AS s
"""

FILL_EVENTS = """
INSERT INTO callback_events (callback_id, at, from_status, to_status, actor, detail)
SELECT :prefix || lpad(i::text, 12, '0'), now(), NULL, 'scheduled', 'perf', '{}'::jsonb
FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS i
"""


def fill_callbacks(
    engine: Engine,
    count: int,
    *,
    start_sql: str = "now() - interval '10 minutes'",
    step_seconds: float = 0.0,
    scheduled_per_mille: int = 1000,
    first: int = 1,
    prefix: str = "cb_perf_",
    events: bool = True,
    chunk: int = 1_000_000,
) -> None:
    """Insert ``count`` callbacks; ``scheduled_per_mille`` of them scheduled, the rest final.

    Row ``i`` comes due at ``start + (i - first) * step_seconds``.
    """
    sql = FILL_CALLBACKS.replace(":start", f"({start_sql})")
    for lo in range(first, first + count, chunk):
        hi = min(lo + chunk - 1, first + count - 1)
        params = {
            "prefix": prefix,
            "first": lo,
            "last": hi,
            "step": step_seconds,
            "scheduled_per_mille": scheduled_per_mille,
        }
        with engine.begin() as conn:
            # Offsets count from the overall first row, so chunks continue one timeline.
            conn.execute(text(sql.replace("(i - :first)", f"(i - {first})")), params)
            if events:
                conn.execute(text(FILL_EVENTS), {"prefix": prefix, "first": lo, "last": hi})


def vacuum_analyze(engine: Engine, table: str = "callbacks") -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"VACUUM ANALYZE {table}"))


def flush_redis(url: str = PERF_REDIS_URL) -> None:
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def commits(engine: Engine) -> int:
    """Transactions committed in this database so far (all sessions), from pg_stat_database."""
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        value = conn.execute(
            text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        ).scalar_one()
    return int(value)


# --- processes -------------------------------------------------------------------------


class RssSampler:
    """Peak and last resident set size (MiB) of named processes, children included."""

    def __init__(self, pids: Mapping[str, int], every: float = 0.5) -> None:
        self.pids = dict(pids)
        self.peak: dict[str, float] = dict.fromkeys(pids, 0.0)
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                mib = tree_rss_mib(pid)
                if mib:
                    self.first.setdefault(name, mib)
                    self.last[name] = mib
                    self.peak[name] = max(self.peak[name], mib)
            self._stop.wait(self._every)


class CpuSampler:
    """CPU seconds (user + system) of one process over wall time, sampled every ``every``
    seconds: the CPU a span of a run took, read from the samples around it. Under load from
    other processes a rate drops, but the CPU spent per item barely moves."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            proc = psutil.Process(self.pid)
            while not self._stop.is_set():
                times = proc.cpu_times()
                self.samples.append((time.time(), times.user + times.system))
                self._stop.wait(self._every)
        except psutil.Error:
            return

    def at(self, when: float) -> float:
        """CPU seconds used by ``when`` (wall clock), interpolated between samples."""
        before = [s for s in self.samples if s[0] <= when]
        after = [s for s in self.samples if s[0] >= when]
        if not before:
            return self.samples[0][1] if self.samples else 0.0
        if not after:
            return self.samples[-1][1]
        (t0, c0), (t1, c1) = before[-1], after[0]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)

    def between(self, start: float, end: float) -> float:
        return self.at(end) - self.at(start)


def tree_rss_mib(pid: int) -> float:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs) / 2**20
    except psutil.Error:
        return 0.0


def perf_env(**values: str) -> dict[str, str]:
    """This process's environment without the service variables, plus ``values``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "BROKER_", "SPEKO_", "PERF_"))
    }
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(values)
    return env
