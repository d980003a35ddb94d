"""Manual actions on callbacks, without HTTP: list, get, cancel, dispatch (the admin API's
service).

Every function is scoped to one organization: another organization's callback is
:class:`CallbackNotFound`, exactly like a missing one (invariant 8). Every status change
is one move of :mod:`worker.lifecycle`, recorded with
the acting key (``api:<key id>``) and, for a cancel, the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from worker import lifecycle
from worker.clock import Clock
from worker.db.models import Callback
from worker.lifecycle import may_have_rung
from worker.status import Status

log = logging.getLogger(__name__)

# A row can move between our failed write and our read of it (a claim released back to
# scheduled); try again a few times rather than answer with a stale conflict.
RACE_RETRIES = 3

Publish = Callable[[str], None]


class CallbackNotFound(LookupError):
    """No such callback in this organization (it may exist in another one)."""


class StatusConflict(Exception):
    def __init__(self, action: str, current: Status) -> None:
        super().__init__(f"cannot {action} a callback that is {current}")
        self.action = action
        self.current = current


class UnconfirmedRedial(Exception):
    """Dispatching again a callback whose last outcome is unknown, without ``force``.

    Its call may have been placed; a new dispatch round has a new Idempotency-Key, so the
    provider would place a second call. The operator must check first, then confirm.
    """

    def __init__(self, callback_id: str, cause: str) -> None:
        super().__init__(
            f"Callback {callback_id} failed with an unknown outcome, so the person may "
            f"already have been called ({cause}). Dispatching it again places a new call. "
            'Check with the provider first; to dispatch anyway, send {"force": true}.'
        )
        self.callback_id = callback_id
        self.cause = cause


class PublishFailed(Exception):
    """The dispatch message could not be sent; the callback was put back as it was."""


def actor_for(key_id: str) -> str:
    return f"api:{key_id}"


def mask_number(number: str | None) -> str:
    """A phone number for logs: all but the last four digits hidden."""
    if not number:
        return "-"
    return "*" * max(len(number) - 4, 0) + number[-4:]


def storable(value: str) -> bool:
    """Whether a string can be sent to the database at all (PostgreSQL refuses NUL)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def list_query(
    organization_id: str,
    *,
    status: Status | None = None,
    source_session_id: str | None = None,
    limit: int = 25,
) -> Select[Callback]:
    """Newest first; ties on ``created_at`` broken by id, so pages are deterministic.

    The order matches the ``(organization_id, [status | source_session_id,] created_at,
    id)`` indexes, so PostgreSQL walks an index backwards and stops after ``limit`` rows.
    """
    query = select(Callback).where(Callback.organization_id == organization_id)
    if status is not None:
        query = query.where(Callback.status == status)
    if source_session_id is not None:
        query = query.where(Callback.source_session_id == source_session_id)
    return query.order_by(Callback.created_at.desc(), Callback.id.desc()).limit(limit)


def list_callbacks(
    session: Session,
    organization_id: str,
    *,
    status: Status | None = None,
    source_session_id: str | None = None,
    limit: int = 25,
) -> list[Callback]:
    if source_session_id is not None and not storable(source_session_id):
        return []
    query = list_query(
        organization_id, status=status, source_session_id=source_session_id, limit=limit
    )
    return list(session.scalars(query))


def get_callback(session: Session, organization_id: str, callback_id: str) -> Callback:
    if not storable(callback_id):
        raise CallbackNotFound(callback_id)
    # populate_existing: a row read earlier in this session may have moved since.
    cb = session.scalar(
        select(Callback)
        .where(Callback.id == callback_id, Callback.organization_id == organization_id)
        .execution_options(populate_existing=True)
    )
    if cb is None:
        raise CallbackNotFound(callback_id)
    return cb


def _peek(session: Session, organization_id: str, callback_id: str) -> Callback:
    """The row as it is now, detached: a later ``UPDATE ... RETURNING`` of the same row
    would otherwise hand back this object with its old values (the identity map)."""
    cb = get_callback(session, organization_id, callback_id)
    session.expunge(cb)
    return cb


def cancel(
    session: Session,
    organization_id: str,
    callback_id: str,
    *,
    now: datetime,
    actor: str,
    reason: str | None,
) -> Callback:
    """``scheduled`` → ``cancelled``; an already cancelled callback is returned unchanged.

    The cancel and the claim are both conditional on ``scheduled``, so exactly one wins;
    a dial only starts from ``dispatching``, so once a cancel commits no dial can start.
    """
    if not storable(callback_id):
        raise CallbackNotFound(callback_id)
    for _ in range(RACE_RETRIES):
        cb = lifecycle.cancel(
            session,
            callback_id,
            organization_id=organization_id,
            now=now,
            actor=actor,
            reason=reason,
        )
        if cb is not None:
            log.info("callback %s (to %s) cancelled by %s", cb.id, mask_number(cb.to_number), actor)
            return cb
        current = _peek(session, organization_id, callback_id)
        if current.status == Status.CANCELLED:
            return current
        if current.status != Status.SCHEDULED:
            raise StatusConflict("cancel", Status(current.status))
    raise StatusConflict("cancel", Status.SCHEDULED)


@dataclass(frozen=True)
class Claimed:
    """A callback the API moved to ``dispatching``, and what to restore if the send fails."""

    callback: Callback
    previous: Status
    previous_round: int
    previous_failure_cause: str | None
    previous_expires_at: datetime | None


def claim_for_dispatch(
    session: Session,
    organization_id: str,
    callback_id: str,
    *,
    now: datetime,
    actor: str,
    lease: timedelta,
    lateness: timedelta | None = None,
    force: bool = False,
) -> Claimed:
    """``scheduled`` → ``dispatching`` whatever its ``scheduled_at``, or ``failed`` →
    ``dispatching`` as an operator's retry (a new dispatch round, so a new Idempotency-Key).

    A failure whose outcome is unknown (the call may have been placed) is dispatched again
    only with ``force``: :class:`UnconfirmedRedial` otherwise.
    """
    # An operator asked for it now: its expiry restarts from now, as for the manual task.
    claim = lifecycle.Claim(now, lease, actor, None if lateness is None else now + lateness)
    for _ in range(RACE_RETRIES):
        current = _peek(session, organization_id, callback_id)
        previous = Status(current.status)
        previous_round, previous_cause = current.dispatch_round, current.failure_cause
        if previous == Status.SCHEDULED:
            cb = lifecycle.claim_one(
                session, callback_id, claim, organization_id=organization_id, via="api"
            )
        elif previous == Status.FAILED and may_have_rung(previous_cause) and not force:
            raise UnconfirmedRedial(callback_id, str(previous_cause))
        elif previous == Status.FAILED:
            # The cause and round read above are only kept for an undo; the write is
            # still conditional on both, so a change in between makes it miss, not clobber.
            cb = lifecycle.reclaim_failed(
                session,
                callback_id,
                claim,
                organization_id=organization_id,
                dispatch_round=previous_round,
                retry_of=previous_cause,
                force=force,
            )
        else:
            raise StatusConflict("dispatch", previous)
        if cb is not None:
            return Claimed(cb, previous, previous_round, previous_cause, current.expires_at)
    raise StatusConflict("dispatch", Status.DISPATCHING)


def undo_claim(session: Session, claimed: Claimed, *, now: datetime, actor: str) -> bool:
    """Put a claim whose message was never sent back as it was, if no attempt started."""
    return lifecycle.undo_claim(
        session,
        claimed.callback,
        back_to=claimed.previous,
        expires_at=claimed.previous_expires_at,
        dispatch_round=claimed.previous_round,
        failure_cause=claimed.previous_failure_cause,
        now=now,
        actor=actor,
    )


def dispatch_now(
    sessions: sessionmaker[Session],
    clock: Clock,
    publish: Publish,
    organization_id: str,
    callback_id: str,
    *,
    actor: str,
    lease: timedelta,
    lateness: timedelta | None = None,
    force: bool = False,
) -> Callback:
    """Claim, commit, then send the dispatch message; if sending fails, undo the claim.

    ``force``: confirm re-dispatching a failure whose outcome is unknown.

    The claim commits first so a message never names a row that is not yet claimed. If
    the undo itself cannot be written, the claim's lease runs out and the reaper
    re-queues it (no attempt started), so the callback is never stranded.
    """
    with sessions.begin() as session:
        claimed = claim_for_dispatch(
            session,
            organization_id,
            callback_id,
            now=clock.now(),
            actor=actor,
            lease=lease,
            lateness=lateness,
            force=force,
        )
    if claimed.previous == Status.FAILED and may_have_rung(claimed.previous_failure_cause):
        log.warning(
            "callback %s: re-dispatched by %s with force although its last outcome was "
            "unknown (%s)",
            callback_id,
            actor,
            claimed.previous_failure_cause,
        )
    try:
        publish(claimed.callback.id)
    except Exception as exc:
        log.warning("callback %s: dispatch message not sent (%s); undoing", callback_id, exc)
        with sessions.begin() as session:
            undone = undo_claim(session, claimed, now=clock.now(), actor=actor)
            if not undone:
                # A worker got the message after all and started the attempt: it goes on.
                return get_callback(session, organization_id, callback_id)
        raise PublishFailed(str(exc)) from exc
    cb = claimed.callback
    log.info("callback %s (to %s) dispatched by %s", cb.id, mask_number(cb.to_number), actor)
    return cb
