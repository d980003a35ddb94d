"""The overview: what is waiting, what is moving, what is stuck, for one organization
or (an operator) all of them.

Each figure is one aggregate statement: counts by status, the due backlog from the
partial due index, and the per-minute series of the last hours from the history's
``at`` index (``ix_callback_events_at``), bucketed by the database.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, case, cast, func, select
from sqlalchemy.orm import Session

from worker.console.viewers import Viewer
from worker.db.models import Callback, CallbackEvent, Hold
from worker.report import cause_class
from worker.status import Status

HOURS = 3
"""How far back the charts look."""
FAILURE_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Minute:
    at: datetime
    dials: int = 0
    placed: int = 0
    lag_avg: float | None = None
    lag_max: float | None = None


@dataclass
class Overview:
    counts: dict[str, int]
    due_backlog: int
    oldest_due_age_seconds: float | None
    minutes: list[Minute]
    failures_by_cause: dict[str, int]
    holds: list[Hold]
    outcomes: dict[str, int]
    redials: int
    since: datetime
    extra: dict[str, Any] = field(default_factory=dict)


def _scope(viewer: Viewer) -> list[ColumnElement[bool]]:
    return (
        []
        if viewer.organization_id is None
        else [Callback.organization_id == viewer.organization_id]
    )


def _minute(session: Session, column: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.date_trunc("minute", column)
    return func.strftime("%Y-%m-%dT%H:%M:00+00:00", column)


def _seconds(session: Session, later: Any, earlier: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _as_time(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def series(session: Session, viewer: Viewer, now: datetime, hours: int = HOURS) -> list[Minute]:
    """Per minute over the last ``hours``: dials started (attempt starts), calls placed,
    and the lag of first attempts (start - ``scheduled_at``), average and worst. One pass
    over the window's history (``ix_callback_events_at``), joined to its callbacks for
    the organization and ``scheduled_at``."""
    since = (now - timedelta(hours=hours)).replace(second=0, microsecond=0)
    e, c = CallbackEvent, Callback
    bucket = _minute(session, e.at).label("m")
    dial = and_(e.from_status == Status.DISPATCHING, e.to_status == Status.DISPATCHING)
    first = and_(dial, e.detail["attempt"].as_integer() == 1)
    lag = cast(_seconds(session, e.at, c.scheduled_at), Float)
    rows = session.execute(
        select(
            bucket,
            func.count().filter(dial),
            func.count().filter(e.to_status == Status.DISPATCHED),
            func.avg(lag).filter(first),
            func.max(lag).filter(first),
        )
        .select_from(e)
        .join(c, c.id == e.callback_id)
        .where(e.at >= since, *_scope(viewer))
        .group_by(bucket)
    ).all()
    by_minute: dict[datetime, Minute] = {}
    for m, dials, placed, avg, worst in rows:
        at = _as_time(m)
        by_minute[at] = Minute(
            at,
            int(dials),
            int(placed),
            None if avg is None else float(avg),
            None if worst is None else float(worst),
        )
    out = []
    at = since
    while at <= now:
        out.append(by_minute.get(at, Minute(at)))
        at += timedelta(minutes=1)
    return out


def overview(session: Session, viewer: Viewer, now: datetime) -> Overview:
    scope = _scope(viewer)
    c = Callback
    since = now - FAILURE_WINDOW
    # Counts by status and the recent failures' causes in one scan of the table (for an
    # operator it is the whole table): each cause is a group of its own, so rows never
    # travel, only one per status and cause.
    recent_cause = case(
        (and_(c.status == Status.FAILED, c.updated_at >= since), c.failure_cause),
        else_=None,
    ).label("cause")
    recent = case((and_(c.status == Status.FAILED, c.updated_at >= since), 1), else_=0)
    counts = dict.fromkeys((s.value for s in Status), 0)
    causes: Counter[str] = Counter()
    for status, cause, is_recent, n in session.execute(
        select(c.status, recent_cause, recent.label("recent"), func.count())
        .where(*scope)
        .group_by(c.status, recent_cause, recent)
    ):
        counts[Status(status).value] += int(n)
        if is_recent:
            causes[cause_class(cause)] += int(n)
    backlog, oldest = session.execute(
        select(func.count(), func.min(c.due_at)).where(
            c.status == Status.SCHEDULED, c.due_at <= now, *scope
        )
    ).one()
    oldest_age = None if oldest is None else (now - _as_time(oldest)).total_seconds()
    outcomes = {
        str(k): int(v)
        for k, v in session.execute(
            select(c.call_outcome, func.count())
            .where(c.call_outcome_at >= since, *scope)
            .group_by(c.call_outcome)
        )
    }
    # Redials made in the window: callbacks created since then (ix_callbacks_created,
    # or the organization's) that name the one they follow.
    redials = session.scalar(
        select(func.count()).where(
            c.created_at >= since, c.metadata_["redial_of"].as_string().is_not(None), *scope
        )
    )
    holds = list(session.scalars(select(Hold).where(Hold.until > now).order_by(Hold.scope)))
    if viewer.organization_id is not None:
        mine = re.compile(r"^(org|number):" + re.escape(viewer.organization_id) + r"(:|$)")
        holds = [h for h in holds if h.scope == "provider" or mine.match(h.scope)]
    return Overview(
        counts=counts,
        due_backlog=int(backlog),
        oldest_due_age_seconds=oldest_age,
        minutes=series(session, viewer, now),
        failures_by_cause=dict(causes.most_common()),
        holds=holds,
        outcomes=outcomes,
        redials=int(redials or 0),
        since=since,
    )


__all__ = ["Minute", "Overview", "overview", "series"]
