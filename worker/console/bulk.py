"""Actions on one callback, a selection, or everything a filter matches: cancel, dispatch
now, reschedule.

First :func:`preview` says how many it will touch and how many it cannot, and why (from
the statuses, one grouped count). Then :func:`run` goes through them in bounded batches,
each change one call of the same function the API's route calls
(:func:`worker.actions.cancel`, :func:`worker.actions.dispatch_now`,
:func:`worker.edits.edit`), so a race with the poller is still decided by one conditional
write: a callback claimed meanwhile is reported as not changed, with its status.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker import actions, edits
from worker.actions import Publish, StatusConflict, UnconfirmedRedial, storable
from worker.clock import Clock
from worker.console.viewers import Viewer
from worker.db.models import Callback
from worker.status import Status
from worker.validation import InvalidCallback

BATCH = 200
"""Callbacks per transaction: a batch's row locks are held briefly."""
MAX_PER_RUN = 5_000
"""At most this many per request, so one click never holds a server thread for minutes;
the result says how many are left and the same form runs the next ones."""
MAX_SELECTION = 500
MAX_LISTED = 200
"""Not-changed callbacks named one by one in a result (the rest are counted by reason)."""


class Action(StrEnum):
    CANCEL = "cancel"
    DISPATCH = "dispatch"
    RESCHEDULE = "reschedule"


ELIGIBLE: dict[Action, frozenset[Status]] = {
    Action.CANCEL: frozenset({Status.SCHEDULED}),
    Action.DISPATCH: frozenset({Status.SCHEDULED, Status.FAILED}),
    Action.RESCHEDULE: frozenset({Status.SCHEDULED}),
}


def why_not(action: Action, status: Status) -> str:
    if action == Action.CANCEL and status == Status.CANCELLED:
        return "already cancelled"
    return f"it is {status}"


@dataclass(frozen=True)
class Preview:
    action: Action
    will: int
    cannot: dict[str, int]
    """Reason → how many."""

    @property
    def total(self) -> int:
        return self.will + sum(self.cannot.values())


def preview(action: Action, by_status: dict[Status, int]) -> Preview:
    will = sum(n for s, n in by_status.items() if s in ELIGIBLE[action])
    cannot: Counter[str] = Counter()
    for status, n in by_status.items():
        if n and status not in ELIGIBLE[action]:
            cannot[why_not(action, status)] += n
    return Preview(action, will, dict(cannot))


@dataclass
class Result:
    action: Action
    changed: int = 0
    not_changed: Counter[str] = field(default_factory=Counter)
    listed: list[tuple[str, str]] = field(default_factory=list)
    """``(callback id, why)`` of the first :data:`MAX_LISTED` not changed."""
    left: bool = False
    """The run stopped at :data:`MAX_PER_RUN` with more to do."""

    def miss(self, callback_id: str, why: str) -> None:
        self.not_changed[why] += 1
        if len(self.listed) < MAX_LISTED:
            self.listed.append((callback_id, why))


@dataclass(frozen=True)
class Wiring:
    """What a dispatch needs, as the API has it (worker.api.deps.ApiContext)."""

    sessions: sessionmaker[Session]
    clock: Clock
    publish: Publish
    lease: timedelta
    lateness: timedelta | None


Target = tuple[str, str, Status]
"""``(id, organization_id, status when read)``."""


def selected(session: Session, viewer: Viewer, ids: Iterable[str]) -> list[Target]:
    """The chosen callbacks this viewer sees (others are silently not there, as in the API)."""
    wanted = [i for i in dict.fromkeys(ids) if storable(i)][:MAX_SELECTION]
    if not wanted:
        return []
    query = select(Callback.id, Callback.organization_id, Callback.status).where(
        Callback.id.in_(wanted)
    )
    if viewer.organization_id is not None:
        query = query.where(Callback.organization_id == viewer.organization_id)
    return [(r.id, r.organization_id, Status(r.status)) for r in session.execute(query)]


def run(
    wiring: Wiring,
    viewer: Viewer,
    action: Action,
    batches: Iterator[list[Target]] | Callable[[], Iterator[list[Target]]],
    *,
    scheduled_at: datetime | None = None,
    reason: str | None = None,
    limit: int = MAX_PER_RUN,
) -> Result:
    """Carry ``action`` out on each target; a batch's cancels or reschedules commit
    together, each dispatch commits its claim before its message is sent (as the API's)."""
    if action == Action.RESCHEDULE and scheduled_at is None:
        raise ValueError("a reschedule needs scheduled_at")
    result = Result(action)
    done = 0
    source = batches() if callable(batches) else batches
    for batch in source:
        todo: list[Target] = []
        for target in batch:
            if done >= limit:
                result.left = True
                break
            done += 1
            todo.append(target)
        if todo:
            _one_batch(wiring, viewer, action, todo, result, scheduled_at, reason)
        if result.left:
            break
    return result


def _one_batch(
    w: Wiring,
    viewer: Viewer,
    action: Action,
    targets: list[Target],
    result: Result,
    scheduled_at: datetime | None,
    reason: str | None,
) -> None:
    actor = viewer.actor
    if action == Action.DISPATCH:
        for callback_id, org, _ in targets:
            try:
                actions.dispatch_now(
                    w.sessions,
                    w.clock,
                    w.publish,
                    org,
                    callback_id,
                    actor=actor,
                    lease=w.lease,
                    lateness=w.lateness,
                )
                result.changed += 1
            except StatusConflict as exc:
                result.miss(callback_id, f"it is {exc.current}")
            except UnconfirmedRedial:
                result.miss(
                    callback_id,
                    "its last outcome is unknown (it may have rung): dispatch it alone, "
                    "with force, after checking with the provider",
                )
            except actions.CallbackNotFound:
                result.miss(callback_id, "not found")
            except actions.PublishFailed:
                result.miss(callback_id, "the broker could not be reached: nothing changed")
        return
    changes = None
    if action == Action.RESCHEDULE:
        changes = edits.parse_edit({"scheduled_at": scheduled_at.isoformat()})  # type: ignore[union-attr]
    with w.sessions.begin() as session:
        now = w.clock.now()
        for callback_id, org, _ in targets:
            try:
                if action == Action.CANCEL:
                    before = session.scalar(
                        select(Callback.status).where(Callback.id == callback_id)
                    )
                    actions.cancel(session, org, callback_id, now=now, actor=actor, reason=reason)
                    if before == Status.CANCELLED:
                        result.miss(callback_id, "already cancelled")
                        continue
                else:
                    assert changes is not None
                    edits.edit(session, org, callback_id, changes, now=now, actor=actor)
                result.changed += 1
            except StatusConflict as exc:
                result.miss(callback_id, f"it is {exc.current}")
            except InvalidCallback as exc:
                result.miss(callback_id, "; ".join(exc.problems))
            except actions.CallbackNotFound:
                result.miss(callback_id, "not found")
