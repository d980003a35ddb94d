"""What an operator asks first: how many in each status, what is waiting, what failed."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.backpressure import claim_waits, percentile, unstarted
from worker.db.models import Callback, PlatformEvent
from worker.durations import say_duration
from worker.metrics import backlog_of
from worker.pacing.holds import PROVIDER, active_hold
from worker.serializer import rfc3339
from worker.status import Status
from worker.webhooks.health import failing_endpoints


def cause_class(cause: str | None) -> str:
    """``"provider refused the call: HTTP 404 ..."`` → ``"provider refused the call"``."""
    head = re.split(r"[:(]", cause or "unknown", maxsplit=1)[0]
    return re.sub(r"\d+", "N", head).strip() or "unknown"


def status_report(session: Session, now: datetime) -> dict[str, Any]:
    counts = dict.fromkeys((s.value for s in Status), 0)
    for status, count in session.execute(
        select(Callback.status, func.count()).group_by(Callback.status)
    ):
        counts[Status(status).value] = count
    backlog, oldest = backlog_of(session, now)
    recent_causes = session.scalars(
        select(Callback.failure_cause).where(
            Callback.status == Status.FAILED, Callback.updated_at >= now - timedelta(hours=1)
        )
    ).all()
    hold = active_hold(session, PROVIDER, now)
    return {
        "at": rfc3339(now),
        "counts": counts,
        "due_backlog": backlog,
        "oldest_due_age_seconds": None
        if oldest is None
        else round((now - oldest).total_seconds(), 3),
        "failed_last_hour_by_cause": dict(Counter(cause_class(c) for c in recent_causes)),
        **claims_report(session, now),
        "held": None if hold is None else {"until": rfc3339(hold.until), "reason": hold.reason},
        **platform_report(session, now),
        "webhooks_failing": failing_endpoints(session, now),
    }


CLAIM_WAIT_PERIOD = timedelta(minutes=5)


def claims_report(session: Session, now: datetime) -> dict[str, Any]:
    """Issue 13: the claims the workers have not reached, and how long claims wait."""
    waiting = unstarted(session)
    waits = claim_waits(session, since=now - CLAIM_WAIT_PERIOD)
    oldest = waiting.oldest_claimed_at

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "claimed_not_started": waiting.count,
        "claimed_oldest_wait_seconds": None
        if oldest is None
        else round(max(0.0, (now - oldest).total_seconds()), 3),
        "claim_wait_last_5_min": {
            "attempts": len(waits),
            "p50_seconds": rounded(percentile(waits, 0.5)),
            "p99_seconds": rounded(percentile(waits, 0.99)),
        },
    }


def render_claims(report: dict[str, Any]) -> list[str]:
    if "claimed_not_started" not in report:
        return []
    line = f"claimed, not started: {report['claimed_not_started']}"
    oldest = report.get("claimed_oldest_wait_seconds")
    if oldest is not None:
        line += f", oldest waiting {say_duration(oldest)}"
    wait = report.get("claim_wait_last_5_min") or {"attempts": 0}
    if wait["attempts"]:
        said = (
            f"claim to start in the last 5 min: p50 {wait['p50_seconds']:.2f} s, "
            f"p99 {wait['p99_seconds']:.2f} s ({wait['attempts']} attempts)"
        )
    else:
        said = "claim to start in the last 5 min: no attempt started"
    return [line, said]


def platform_report(session: Session, now: datetime) -> dict[str, Any]:
    """Issue 14: platform events whose ``scheduled_callback`` was refused in the last hour."""
    since = now - timedelta(hours=1)
    refused = session.execute(
        select(PlatformEvent.webhook_id, PlatformEvent.error)
        .where(
            PlatformEvent.processed_at >= since,
            PlatformEvent.result == "invalid_callback",
        )
        .order_by(PlatformEvent.processed_at.desc())
        .limit(1)
    ).first()
    count = session.scalar(
        select(func.count()).where(
            PlatformEvent.processed_at >= since,
            PlatformEvent.result == "invalid_callback",
        )
    )
    outcomes = dict(
        session.execute(
            select(Callback.call_outcome, func.count())
            .where(Callback.call_outcome_at >= since)
            .group_by(Callback.call_outcome)
        ).all()
    )
    return {
        "call_outcomes_last_hour": {str(k): int(v) for k, v in sorted(outcomes.items())},
        "platform_events_refused_last_hour": count or 0,
        "platform_event_last_refused": None
        if refused is None
        else {"webhook_id": refused.webhook_id, "reason": refused.error},
    }


def render(report: dict[str, Any]) -> str:
    lines = [f"callbacks at {report['at']}"]
    lines += [f"  {status:<12} {count}" for status, count in report["counts"].items()]
    age = report["oldest_due_age_seconds"]
    waiting = f", oldest waiting {say_duration(age)}" if age is not None else ""
    lines.append(f"due backlog: {report['due_backlog']}{waiting}")
    failures = report["failed_last_hour_by_cause"]
    lines.append(
        "failed in the last hour: "
        + (", ".join(f"{c}: {n}" for c, n in failures.items()) or "none")
    )
    lines += render_claims(report)
    held = report["held"]
    lines.append(
        "dialing: HELD until " + held["until"] + " - " + held["reason"]
        if held
        else "dialing: not held"
    )
    lines += render_platform(report)
    lines += _webhook_lines(report.get("webhooks_failing") or [])
    return "\n".join(lines)


def render_platform(report: dict[str, Any]) -> list[str]:
    outcomes = report.get("call_outcomes_last_hour") or {}
    said = ", ".join(f"{k}: {n}" for k, n in outcomes.items()) or "none"
    lines = [f"call outcomes in the last hour: {said}"]
    count = report.get("platform_events_refused_last_hour", 0)
    line = f"platform events refused in the last hour: {count}"
    last = report.get("platform_event_last_refused")
    if last:
        line += f" (last: {last['webhook_id']}: {last['reason']})"
    return [*lines, line]


def _webhook_lines(failing: list[dict[str, Any]]) -> list[str]:
    if not failing:
        return ["webhooks: no endpoint failing"]
    lines = [f"webhooks: {len(failing)} endpoint(s) failing or disabled"]
    for e in failing:
        state = "DISABLED (" + (e["disabled_reason"] or "") + ")" if not e["enabled"] else "failing"
        since = f" since {e['failing_since']}" if e["failing_since"] else ""
        lines.append(
            f"  {e['id']} {e['organization_id']} {e['url']}: {state}{since}, "
            f"{e['pending']} pending (oldest {say_duration(e['oldest_pending_age_seconds'])})"
        )
    return lines
