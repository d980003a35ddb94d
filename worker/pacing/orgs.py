"""Per-organization configuration: calling window, time zone override and pacing caps.

A value left unset (NULL) follows the worker's settings, so changing a default changes
every organization that did not choose otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.db.models import OrgConfig
from worker.pacing.limits import Pacing
from worker.pacing.windows import Window, format_days, hhmm


def days_to_mask(days: Iterable[int]) -> int:
    return sum(1 << d for d in set(days))


def mask_to_days(mask: int) -> frozenset[int]:
    return frozenset(d for d in range(7) if mask & (1 << d))


@dataclass(frozen=True)
class OrgRules:
    """What applies to one organization's callbacks, defaults filled in."""

    window: Window
    timezone: str | None


def rules(config: OrgConfig | None, pacing: Pacing) -> OrgRules:
    if config is None:
        return OrgRules(pacing.window, None)
    default = pacing.window
    window = Window(
        default.start if config.window_start is None else config.window_start,
        default.end if config.window_end is None else config.window_end,
        default.days if config.window_days is None else mask_to_days(config.window_days),
    )
    return OrgRules(window, config.timezone)


def rules_for(session: Session, orgs: Iterable[str], pacing: Pacing) -> dict[str, OrgRules]:
    wanted = set(orgs)
    configs = {
        c.organization_id: c
        for c in session.scalars(select(OrgConfig).where(OrgConfig.organization_id.in_(wanted)))
    }
    return {org: rules(configs.get(org), pacing) for org in wanted}


def upsert(session: Session, organization_id: str, *, now: datetime, **values: Any) -> OrgConfig:
    """Set the given fields (others kept) in one statement; returns the stored row."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(OrgConfig).values(
        organization_id=organization_id, updated_at=now, **values
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[OrgConfig.organization_id], set_={"updated_at": now, **values}
        )
    )
    row = session.get(OrgConfig, organization_id, populate_existing=True)
    assert row is not None
    return row


def set_window(
    session: Session, organization_id: str, window: Window, timezone: str | None, *, now: datetime
) -> OrgConfig:
    return upsert(
        session,
        organization_id,
        now=now,
        window_start=window.start,
        window_end=window.end,
        window_days=days_to_mask(window.days),
        timezone=timezone,
    )


def describe(config: OrgConfig | None, organization_id: str, pacing: Pacing) -> dict[str, Any]:
    """The effective settings of one organization, saying which are its own."""
    r = rules(config, pacing)

    def cap(name: str, default: int) -> int | str:
        own = getattr(config, name) if config is not None else None
        chosen: int = default if own is None else own
        return chosen or "unlimited"

    return {
        "organization_id": organization_id,
        "window": f"{hhmm(r.window.start)}-{hhmm(r.window.end)}",
        "days": format_days(r.window.days),
        "window_from": "organization"
        if config is not None and config.window_start is not None
        else "default",
        "timezone": r.timezone or "the callee's (metadata.timezone, else from the number)",
        "max_concurrent": cap("max_concurrent", pacing.max_concurrent),
        "max_concurrent_per_number": cap(
            "max_concurrent_per_number", pacing.max_concurrent_per_number
        ),
        "max_dials_per_minute": cap("max_dials_per_minute", pacing.max_dials_per_minute),
    }
