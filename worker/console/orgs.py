"""An organization's settings as the console edits them: calling window, pacing caps,
redial policy. Validated by the same parsers as ``callbacks org-window``,
``org-pacing`` and ``org-redial``; stored by the same upsert
(:func:`worker.pacing.orgs.upsert`). A blank field follows the worker's default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.console import audit
from worker.console.viewers import Viewer
from worker.db.models import OrgConfig
from worker.pacing.limits import Pacing
from worker.pacing.orgs import days_to_mask, describe, mask_to_days, upsert
from worker.pacing.windows import Window, format_days, hhmm, parse_days, parse_hhmm, valid_zone_name
from worker.redials import RedialPolicy, parse_intervals, parse_on, policy_of

CAPS = ("max_concurrent", "max_concurrent_per_number", "max_dials_per_minute")
MAX_REDIALS = 10


@dataclass(frozen=True)
class Defaults:
    pacing: Pacing
    redials: RedialPolicy


class Invalid(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def form_values(config: OrgConfig | None) -> dict[str, str]:
    """The organization's own values as the form shows them (blank: the default)."""
    if config is None:
        return {}
    own: dict[str, str] = {}
    if config.window_start is not None:
        own["window_start"] = hhmm(config.window_start)
    if config.window_end is not None:
        own["window_end"] = hhmm(config.window_end)
    if config.window_days is not None:
        own["window_days"] = format_days(mask_to_days(config.window_days))
    if config.timezone:
        own["timezone"] = config.timezone
    for cap in CAPS:
        value = getattr(config, cap)
        if value is not None:
            own[cap] = str(value)
    if config.redial_max is not None:
        own["redial_max"] = str(config.redial_max)
    if config.redial_on is not None:
        own["redial_on"] = config.redial_on
    if config.redial_intervals is not None:
        own["redial_intervals"] = config.redial_intervals
    return own


def parse(form: Mapping[str, str], *, allow_overnight: bool) -> dict[str, Any]:
    """Columns to store (``None``: back to the default); :class:`Invalid` lists every
    problem at once."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    got = {k: (v or "").strip() for k, v in form.items()}
    start, end, days = (
        got.get("window_start", ""),
        got.get("window_end", ""),
        got.get("window_days", ""),
    )
    if bool(start) != bool(end):
        problems.append("window: give both start and end (or neither, for the default)")
    elif start:
        try:
            window = Window.parse(start, end, days or "daily")
            if window.crosses_midnight and not allow_overnight:
                problems.append(
                    f"window {start}-{end} crosses midnight: tick 'across midnight' if you "
                    "mean it (US rules forbid calls before 08:00 and after 21:00 locally)"
                )
            values |= {"window_start": parse_hhmm(start), "window_end": parse_hhmm(end)}
        except ValueError as exc:
            problems.append(f"window: {exc}")
    else:
        values |= {"window_start": None, "window_end": None}
    if days:
        try:
            values["window_days"] = days_to_mask(parse_days(days))
        except ValueError as exc:
            problems.append(f"days: {exc}")
    else:
        values["window_days"] = None
    zone = got.get("timezone", "")
    try:
        values["timezone"] = valid_zone_name(zone) if zone else None
    except ValueError as exc:
        problems.append(f"timezone: {exc}")
    for cap in CAPS:
        text = got.get(cap, "")
        if not text:
            values[cap] = None
        elif not text.isdigit() or len(text) > 9:
            problems.append(f"{cap}: a whole number, 0 (unlimited) or more")
        else:
            values[cap] = int(text)
    text = got.get("redial_max", "")
    if not text:
        values["redial_max"] = None
    elif not text.isdigit() or int(text) > MAX_REDIALS:
        problems.append(f"redial_max: between 0 (off) and {MAX_REDIALS}")
    else:
        values["redial_max"] = int(text)
    on = got.get("redial_on", "")
    try:
        values["redial_on"] = ",".join(sorted(parse_on(on))) if on else None
    except ValueError as exc:
        problems.append(str(exc))
    intervals = got.get("redial_intervals", "").replace(" ", "")
    try:
        if intervals:
            parse_intervals(intervals)
        values["redial_intervals"] = intervals or None
    except ValueError as exc:
        problems.append(f"redial_intervals: {exc}")
    if problems:
        raise Invalid(problems)
    return values


def view(session: Session, organization_id: str, defaults: Defaults) -> dict[str, Any]:
    config = session.get(OrgConfig, organization_id)
    return {
        "effective": describe(config, organization_id, defaults.pacing),
        "redials": policy_of(config, defaults.redials).view(),
        "own": form_values(config),
        "updated_at": None if config is None else config.updated_at,
    }


def save(
    session: Session,
    viewer: Viewer,
    organization_id: str,
    values: dict[str, Any],
    *,
    now: datetime,
) -> None:
    upsert(session, organization_id, now=now, **values)
    audit.record(
        session,
        viewer,
        "org_settings",
        {"organization_id": organization_id, "values": values},
        now=now,
    )


def configured(session: Session, limit: int = 500) -> list[str]:
    """Organizations with settings of their own."""
    return list(
        session.scalars(
            select(OrgConfig.organization_id).order_by(OrgConfig.organization_id).limit(limit)
        )
    )
