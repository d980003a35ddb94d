"""The fair, paced pick of due callbacks: round-robin across organizations, within caps.

Each organization with due work gives its oldest due rows, no more than the room its
caps leave (concurrency per organization, per ``phone_number_id``, tokens of its dial
rate) and none of a held organization or number. The pick then orders them by rank
within their organization first (every organization's oldest, then every one's second,
...), so one organization's backlog of 50,000 cannot push another's single due callback
out of the batch.

On PostgreSQL the organizations are found by a skip-scan (a recursive CTE that jumps
through ``ix_callbacks_org_due`` one organization at a time) and each one's rows by a
``LATERAL`` index scan that stops at its room: the poll reads O(organizations + batch)
index entries, never the whole backlog. The top ``batch`` are chosen before the rows are
locked (``top``), so the lock step is a primary-key lookup per row. SQLite (embedded,
small) ranks every due row.

The claim runs as a generic plan (:mod:`worker.claims`), which cannot see that ``LIMIT
:batch`` is small: it guesses a tenth of the eligible rows, thousands, and joined them to
``callbacks`` by hashing the whole table, a sequential scan per claim. The lock step
therefore names its rows as ``id = ANY(ARRAY(SELECT id FROM top))``, an index condition
the plan can only meet through the primary key (tests/perf: at 100,000 rows of one
organization a claim of 100 cost ~60 ms in that scan, and its cost grew with the table).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, TextClause, bindparam, text
from sqlalchemy.sql.selectable import TextualSelect

from worker.db.types import UTCDateTime
from worker.pacing.limits import UNLIMITED, Pacing

_PG_ORGS = """
orgs(org) AS (
    (SELECT organization_id FROM callbacks
     WHERE status = 'scheduled' ORDER BY organization_id LIMIT 1)
  UNION ALL
    SELECT (SELECT c.organization_id FROM callbacks c
            WHERE c.status = 'scheduled' AND c.organization_id > orgs.org
            ORDER BY c.organization_id LIMIT 1)
    FROM orgs WHERE orgs.org IS NOT NULL
),"""

_SQLITE_ORGS = """
orgs(org) AS (
    SELECT DISTINCT organization_id FROM callbacks
    WHERE status = 'scheduled' AND due_at <= :now
),"""

_COMMON = """
limits AS (
    SELECT o.org,
        CASE WHEN COALESCE(g.max_concurrent, :conc) = 0 THEN :big
             ELSE COALESCE(g.max_concurrent, :conc) END AS conc,
        CASE WHEN COALESCE(g.max_concurrent_per_number, :per_number) = 0 THEN :big
             ELSE COALESCE(g.max_concurrent_per_number, :per_number) END AS per_number,
        COALESCE(g.max_dials_per_minute, :rate) AS rate,
        p.tokens, p.refilled_at
    FROM orgs o
    LEFT JOIN org_configs g ON g.organization_id = o.org
    LEFT JOIN org_pacing p ON p.organization_id = o.org
    WHERE o.org IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.scope = 'org:' || o.org AND h.until > :now)
),
busy AS (
    SELECT organization_id AS org, phone_number_id AS num, count(*) AS n
    FROM callbacks WHERE status = 'dispatching'
    GROUP BY organization_id, phone_number_id
),
room AS (
    SELECT l.org, l.per_number, CAST({floor}({least}(
        CASE WHEN l.conc >= :big THEN :big
             ELSE l.conc - COALESCE((SELECT sum(b.n) FROM busy b WHERE b.org = l.org), 0) END,
        CASE WHEN l.rate = 0 THEN :big
             ELSE {least}({greatest}(1.0, l.rate / 12.0),
                          COALESCE(l.tokens + {elapsed} * l.rate / 60.0,
                                   {greatest}(1.0, l.rate / 12.0))) END,
        :batch)) AS INTEGER) AS n
    FROM limits l
),"""

# A number may still take rows if it is not held and has room left. Every count of `busy`
# sits behind a CASE on "no cap" (CASE, not OR: only CASE fixes the order of evaluation),
# so without caps (the default) `busy` is never read: a scan of every `dispatching` row
# per claim otherwise (tests/perf).
_NUMBER_OPEN = """(c.phone_number_id IS NULL OR (
    NOT EXISTS (SELECT 1 FROM holds h
                WHERE h.scope = 'number:' || r.org || ':' || c.phone_number_id
                  AND h.until > :now)
    AND CASE WHEN r.per_number >= :big THEN TRUE
             ELSE COALESCE((SELECT b.n FROM busy b
                            WHERE b.org = r.org AND b.num = c.phone_number_id), 0)
                  < r.per_number END))"""

# Built from the constants above only; every value is a bound parameter.
_PG_PICK = """
picked AS (
    SELECT k.id, k.due_at, r.org, k.num, r.per_number, r.n,
        row_number() OVER (PARTITION BY r.org ORDER BY k.due_at, k.scheduled_at, k.id) AS rn,
        row_number() OVER (PARTITION BY r.org, k.num
                           ORDER BY k.due_at, k.scheduled_at, k.id) AS rn_num
    FROM room r CROSS JOIN LATERAL (
        SELECT c.id, c.due_at, c.scheduled_at, c.phone_number_id AS num
        FROM callbacks c
        WHERE c.organization_id = r.org AND c.status = 'scheduled' AND c.due_at <= :now
          AND __NUMBER_OPEN__
        ORDER BY c.due_at, c.scheduled_at, c.id
        LIMIT GREATEST(r.n, 0)
    ) k
),"""

_SQLITE_PICK = """
picked AS (
    SELECT c.id, c.due_at, r.org, c.phone_number_id AS num, r.per_number, r.n,
        row_number() OVER (PARTITION BY r.org ORDER BY c.due_at, c.scheduled_at, c.id) AS rn,
        row_number() OVER (PARTITION BY r.org, c.phone_number_id
                           ORDER BY c.due_at, c.scheduled_at, c.id) AS rn_num
    FROM room r JOIN callbacks c ON c.organization_id = r.org
    WHERE c.status = 'scheduled' AND c.due_at <= :now AND __NUMBER_OPEN__
),"""

_ELIGIBLE = """
eligible AS (
    SELECT p.id, p.rn, p.due_at FROM picked p
    WHERE p.rn <= p.n
      AND (p.num IS NULL OR CASE WHEN p.per_number >= :big THEN TRUE
           ELSE p.rn_num + COALESCE(
               (SELECT b.n FROM busy b WHERE b.org = p.org AND b.num = p.num), 0)
               <= p.per_number END)
)"""

# Assembled from the constants above only; every value is a bound parameter.
_PG = (
    "WITH RECURSIVE"  # noqa: S608
    + _PG_ORGS
    + _COMMON.format(
        floor="FLOOR",
        least="LEAST",
        greatest="GREATEST",
        elapsed="EXTRACT(EPOCH FROM (:now - l.refilled_at))",
    )
    + _PG_PICK.replace("__NUMBER_OPEN__", _NUMBER_OPEN)
    + _ELIGIBLE
    + """,
top AS MATERIALIZED (
    SELECT e.id, e.rn, e.due_at FROM eligible e ORDER BY e.rn, e.due_at, e.id LIMIT :batch
)
SELECT c.id FROM top t JOIN callbacks c ON c.id = t.id
WHERE c.status = 'scheduled' AND c.id = ANY(ARRAY(SELECT id FROM top))
ORDER BY t.rn, t.due_at, c.id
FOR UPDATE OF c SKIP LOCKED"""
)

_SQLITE = (
    "WITH"
    + _SQLITE_ORGS
    + _COMMON.format(
        floor="",
        least="MIN",
        greatest="MAX",
        elapsed="((julianday(:now) - julianday(l.refilled_at)) * 86400.0)",
    )
    + _SQLITE_PICK.replace("__NUMBER_OPEN__", _NUMBER_OPEN)
    + _ELIGIBLE
    + """
SELECT e.id FROM eligible e ORDER BY e.rn, e.due_at, e.id LIMIT :batch"""
)


def _limit(value: int) -> int:
    return value if value > 0 else 0


def fair_pick(dialect: str, *, now: datetime, batch: int, pacing: Pacing) -> TextualSelect:
    """The ids of up to ``batch`` callbacks to claim now (locked, on PostgreSQL)."""
    sql: TextClause = text(_PG if dialect == "postgresql" else _SQLITE)
    sql = sql.bindparams(
        bindparam("now", now, type_=UTCDateTime()),
        bindparam("batch", batch),
        bindparam("big", UNLIMITED),
        bindparam("conc", _limit(pacing.max_concurrent)),
        bindparam("per_number", _limit(pacing.max_concurrent_per_number)),
        bindparam("rate", _limit(pacing.max_dials_per_minute)),
    )
    return sql.columns(id=String)
