"""One callback as the console shows it: every field, its history, its dial attempts,
its redial chain and its webhook deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.actions import CallbackNotFound, storable
from worker.console.viewers import Viewer
from worker.db.models import Callback, CallbackEvent
from worker.webhooks.log import Filters, list_deliveries

MAX_CHAIN = 50
"""Redials are bounded by the policy's maximum; this only guards a corrupt chain."""


@dataclass(frozen=True)
class Attempt:
    number: int
    started_at: datetime
    idempotency_key: str
    outcome: str
    """``placed``, ``failed``, ``retry later``, ... or ``in flight``."""
    ended_at: datetime | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class Detail:
    callback: Callback
    history: list[CallbackEvent]
    attempts: list[Attempt]
    redial_chain: list[Callback]
    """Oldest first, this callback included."""
    deliveries: list[dict[str, Any]]


def find(session: Session, viewer: Viewer, callback_id: str) -> Callback:
    if not storable(callback_id):
        raise CallbackNotFound(callback_id)
    query = select(Callback).where(Callback.id == callback_id)
    if viewer.organization_id is not None:
        query = query.where(Callback.organization_id == viewer.organization_id)
    cb = session.scalar(query)
    if cb is None:
        raise CallbackNotFound(callback_id)
    return cb


def attempts_of(callback_id: str, history: list[CallbackEvent]) -> list[Attempt]:
    """Each dial attempt from the history: started (an ``attempt started`` event), then
    the first move out of ``dispatching`` for that attempt number says how it ended. The
    Idempotency-Key is ``<id>.<dispatch round>``; an operator's retry of a failed
    callback (``failed -> dispatching``) starts the next round."""
    found: list[Attempt] = []
    round_ = 1
    open_: dict[int, tuple[CallbackEvent, int]] = {}
    ended: dict[int, CallbackEvent] = {}
    for event in history:
        detail = event.detail or {}
        if event.from_status == "failed" and event.to_status == "dispatching":
            round_ += 1
        number = detail.get("attempt")
        if not isinstance(number, int):
            continue
        if detail.get("event") == "attempt started":
            open_[number] = (event, round_)
        elif event.from_status == "dispatching" and event.to_status != "dispatching":
            ended.setdefault(number, event)
    for number, (start, r) in sorted(open_.items()):
        end = ended.get(number)
        if end is None:
            outcome = "in flight"
        elif end.to_status == "dispatched":
            outcome = "placed"
        elif end.to_status == "scheduled":
            outcome = "retry later: " + str((end.detail or {}).get("why", "transient"))
        else:
            outcome = str(
                (end.detail or {}).get("cause") or (end.detail or {}).get("why") or end.to_status
            )
        found.append(
            Attempt(
                number,
                start.at,
                f"{callback_id}.{r}",
                outcome,
                None if end is None else end.at,
                dict(end.detail or {}) if end is not None else {},
            )
        )
    return found


def redial_chain(session: Session, cb: Callback) -> list[Callback]:
    """Back along ``metadata.redial_of`` to the first call, then forward to the redials
    made after it. Redials keep the organization and number, so the forward search reads
    only that number's callbacks (``ix_callbacks_org_number_created``)."""
    chain = [cb]
    seen = {cb.id}
    current = cb
    while len(chain) < MAX_CHAIN:
        parent_id = (current.metadata_ or {}).get("redial_of")
        if not isinstance(parent_id, str) or parent_id in seen:
            break
        parent = session.scalar(
            select(Callback).where(
                Callback.id == parent_id, Callback.organization_id == cb.organization_id
            )
        )
        if parent is None:
            break
        chain.insert(0, parent)
        seen.add(parent.id)
        current = parent
    same_number = session.scalars(
        select(Callback)
        .where(Callback.organization_id == cb.organization_id, Callback.to_number == cb.to_number)
        .order_by(Callback.created_at)
        .limit(1000)
    ).all()
    by_parent = {
        str((c.metadata_ or {}).get("redial_of")): c
        for c in same_number
        if (c.metadata_ or {}).get("redial_of")
    }
    tail = chain[-1]
    while len(chain) < MAX_CHAIN and tail.id in by_parent and by_parent[tail.id].id not in seen:
        tail = by_parent[tail.id]
        chain.append(tail)
        seen.add(tail.id)
    return chain


def detail(session: Session, viewer: Viewer, callback_id: str) -> Detail:
    cb = find(session, viewer, callback_id)
    history = list(
        session.scalars(
            select(CallbackEvent)
            .where(CallbackEvent.callback_id == cb.id)
            .order_by(CallbackEvent.at, CallbackEvent.id)
        )
    )
    deliveries = list_deliveries(
        session, cb.organization_id, Filters(callback_id=cb.id), limit=100
    )["deliveries"]
    return Detail(cb, history, attempts_of(cb.id, history), redial_chain(session, cb), deliveries)
