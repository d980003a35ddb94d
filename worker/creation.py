"""Creating callbacks: the one service function (:func:`schedule`) behind
``callbacks schedule`` (flags or a JSON-lines file), the ``callbacks.schedule`` Celery
task the analysis pipeline calls, the embedded demo, and the admin API's
``POST /v1/callbacks`` (:func:`worker.edits.create_one`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from worker import lifecycle
from worker.db.models import Callback
from worker.durations import say_duration
from worker.ids import new_callback_id
from worker.validation import InvalidCallback, NewCallback

DEFAULT_LATENESS = timedelta(hours=4)


class Scheduled(list[Callback]):
    """The callbacks, in the order asked; ``replayed`` of them existed already (same
    idempotency key and callback), the others were created now."""

    replayed: int = 0


class IdempotencyConflict(ValueError):
    """An idempotency key already used for a different callback; nothing was created."""


def fingerprint(item: NewCallback) -> str:
    """The callback as asked, normalized (``scheduled_at`` in UTC), hashed."""
    data = item.model_dump(mode="json", exclude={"idempotency_key"})
    data["scheduled_at"] = item.scheduled_at.astimezone(UTC).isoformat()
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replays(
    session: Session, new: Sequence[NewCallback], labels: Sequence[str]
) -> dict[tuple[str, str], Callback]:
    """Callbacks already created with the keys in ``new``; a key reused for a different
    callback (stored, or earlier in this batch) raises IdempotencyConflict."""
    keyed = [(label, item) for label, item in zip(labels, new, strict=True) if item.idempotency_key]
    if not keyed:
        return {}
    pairs = {(item.organization_id, item.idempotency_key or "") for _, item in keyed}
    found = {
        (cb.organization_id, cb.creation_key or ""): cb
        for cb in session.scalars(
            select(Callback).where(
                tuple_(Callback.organization_id, Callback.creation_key).in_(list(pairs))
            )
        )
    }
    seen: dict[tuple[str, str], str] = {
        pair: cb.creation_fingerprint or "" for pair, cb in found.items()
    }
    for label, item in keyed:
        pair = (item.organization_id, item.idempotency_key or "")
        print_ = fingerprint(item)
        if seen.setdefault(pair, print_) != print_:
            where = f"{label}: " if label else ""
            raise IdempotencyConflict(
                f"{where}idempotency key {item.idempotency_key!r} was already used for a "
                "different callback in this organization; use a new key for a new callback"
            )
    return found


def lateness_of(item: NewCallback, default: timedelta | None) -> timedelta | None:
    if item.max_lateness_seconds is not None:
        return timedelta(seconds=item.max_lateness_seconds)
    return default


def expiry(item: NewCallback, default: timedelta | None) -> datetime | None:
    lateness = lateness_of(item, default)
    return None if lateness is None else item.scheduled_at + lateness


def refuse_expired(
    new: Sequence[NewCallback],
    *,
    now: datetime,
    lateness: timedelta | None,
    labels: Sequence[str] | None = None,
) -> None:
    """A callback already past its lateness when it is created is refused, not stored.

    Refused rather than created ``failed`` (cause ``expired``): the caller learns at once,
    in the answer to its own request, that the time it gave is too far in the past (often
    a wrong year or time zone) and can fix it; a ``failed`` row would be work that was
    never possible, found later, if ever, in a list of real failures.
    """
    names = labels or ([""] if len(new) == 1 else [f"callback {i}" for i in range(len(new))])
    problems = []
    for label, item in zip(names, new, strict=True):
        expires_at = expiry(item, lateness)
        if expires_at is not None and expires_at <= now:
            allowed = lateness_of(item, lateness)
            problems.append(
                f"{label + ': ' if label else ''}scheduled_at: "
                f"{item.scheduled_at.isoformat()} is more than its allowed lateness "
                f"({_seconds(allowed)}) in the past, so it could only be placed too late; "
                "give a time that is not that far in the past "
                "(or a larger max_lateness_seconds)"
            )
    if problems:
        raise InvalidCallback(problems)


def _seconds(value: timedelta | None) -> str:
    return "none" if value is None else say_duration(value.total_seconds())


def schedule(
    session: Session,
    new: Sequence[NewCallback],
    *,
    now: datetime,
    actor: str,
    lateness: timedelta | None = DEFAULT_LATENESS,
    labels: Sequence[str] | None = None,
) -> Scheduled:
    """Insert every callback (all or nothing: the caller's transaction) with its first event.

    ``lateness``: how long after ``scheduled_at`` a callback may still be placed, unless it
    says otherwise; ``None``: never expires. Raises ``InvalidCallback`` (nothing stored)
    if one is already past it; ``labels`` locate each item in that message.

    An ``idempotency_key`` already used in the organization for the same callback returns
    that callback (counted in ``replayed``), for a different one raises
    ``IdempotencyConflict``; two creates racing with one key: the unique index makes the
    loser's transaction fail (IntegrityError), and its retry finds the winner's row.
    """
    names = labels or ([""] if len(new) == 1 else [f"callback {i}" for i in range(len(new))])
    existing = _replays(session, new, names)
    fresh: list[NewCallback] = []
    fresh_labels: list[str] = []
    keys_in_batch: set[tuple[str, str]] = set()
    for label, item in zip(names, new, strict=True):
        pair = (item.organization_id, item.idempotency_key or "")
        if item.idempotency_key and (pair in existing or pair in keys_in_batch):
            continue
        keys_in_batch.add(pair)
        fresh.append(item)
        fresh_labels.append(label)
    refuse_expired(fresh, now=now, lateness=lateness, labels=fresh_labels)
    fields = [
        {
            "id": new_callback_id(),
            "organization_id": item.organization_id,
            "source_session_id": item.source_session_id,
            "agent_id": item.agent_id,
            "phone_number_id": item.phone_number_id,
            "to_number": item.to_number,
            "from_number": item.from_number,
            "scheduled_at": item.scheduled_at,
            "expires_at": expiry(item, lateness),
            "reason": item.reason,
            "instructions": item.instructions,
            "summary": item.summary,
            "pipeline_config": item.pipeline_config,
            "metadata_": item.metadata,
            "creation_key": item.idempotency_key,
            "creation_fingerprint": fingerprint(item) if item.idempotency_key else None,
        }
        for item in fresh
    ]
    created = lifecycle.create(session, fields, now=now, actor=actor)
    by_key = dict(existing)
    for cb in created:
        if cb.creation_key:
            by_key[(cb.organization_id, cb.creation_key)] = cb
    out = Scheduled()
    fresh_iter = iter(created)
    used: set[tuple[str, str]] = set()
    for item in new:
        pair = (item.organization_id, item.idempotency_key or "")
        if not item.idempotency_key:
            out.append(next(fresh_iter))
        elif pair in existing or pair in used:
            out.append(by_key[pair])
            out.replayed += 1
        else:
            used.add(pair)
            out.append(next(fresh_iter))
    return out
