"""ORM models: ``callbacks`` (one row per callback) and ``callback_events`` (its history)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from worker.db.types import JsonDocument, UTCDateTime
from worker.dialer.port import SESSION_ID_MAX_LENGTH
from worker.status import Status

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_SCHEDULED = text("status = 'scheduled'")
_DISPATCHING = text("status = 'dispatching'")
_HAS_CREATION_KEY = text("creation_key IS NOT NULL")
_HAS_CREATED_SESSION = text("created_session_id IS NOT NULL")
_UNPROCESSED = text("processed_at IS NULL")
_HAS_OUTCOME = text("call_outcome_at IS NOT NULL")
_OUTCOME_PENDING = text("status = 'dispatched' AND call_outcome IS NULL")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Callback(Base):
    __tablename__ = "callbacks"

    # --- the public ScheduledCallback fields, same names, types and nullability ---
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(128))
    source_session_id: Mapped[str | None] = mapped_column(String(128))
    created_session_id: Mapped[str | None] = mapped_column(String(SESSION_ID_MAX_LENGTH))
    agent_id: Mapped[str | None] = mapped_column(String(128))
    phone_number_id: Mapped[str | None] = mapped_column(String(128))
    to_number: Mapped[str] = mapped_column(String(16))
    from_number: Mapped[str | None] = mapped_column(String(16))
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[Status] = mapped_column(
        Enum(
            Status,
            native_enum=False,
            create_constraint=False,
            length=16,
            values_callable=lambda statuses: [s.value for s in statuses],
        )
    )
    reason: Mapped[str | None] = mapped_column(Text)
    instructions: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    pipeline_config: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JsonDocument)
    failure_cause: Mapped[str | None] = mapped_column(Text)
    attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    # --- internal bookkeeping, never served by the API ---
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """When the poller may next claim it: ``scheduled_at`` at first, later after a retry wait."""
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """While ``dispatching``: when the reaper may take the row back."""
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When the latest claim was made (kept after its attempt starts: the claim-to-start
    wait). A claim not started counts against the claim window while recent."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Attempts started (the number of the latest one)."""
    attempt_in_flight: Mapped[bool] = mapped_column(Boolean, default=False)
    """True from the attempt-start compare-and-set until its outcome is recorded."""
    dispatch_round: Mapped[int] = mapped_column(Integer, default=1)
    """Bumped by a manual retry of a failed callback; part of the Idempotency-Key."""
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Not placed by then: ``failed`` with cause ``expired`` (NULL: never expires)."""
    creation_key: Mapped[str | None] = mapped_column(String(128))
    """The caller's idempotency key for creating it (unique per organization)."""
    creation_fingerprint: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 of the callback as created with that key: a replay must match it."""

    # --- the call's outcome (issue 14): served by the API, null until known ---
    call_outcome: Mapped[str | None] = mapped_column(String(16))
    """answered, no_answer, busy, voicemail, failed or unknown (worker/call_outcome.py)."""
    call_outcome_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome_pull_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Internal: the next pull of the call's outcome (NULL: dispatched_at + OUTCOME_PULL_AFTER)."""
    outcome_pulls: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    """Internal: pulls made that did not decide the outcome (the backoff's exponent)."""

    __table_args__ = (
        # The poll reads only due rows: cost follows what is due, not the table size.
        Index("ix_callbacks_due", "due_at", postgresql_where=_SCHEDULED, sqlite_where=_SCHEDULED),
        # The reaper reads only rows in flight.
        Index(
            "ix_callbacks_lease",
            "lease_expires_at",
            postgresql_where=_DISPATCHING,
            sqlite_where=_DISPATCHING,
        ),
        # Per-organization listing, newest first, optionally by status or source session.
        Index("ix_callbacks_org_created", "organization_id", "created_at", "id"),
        Index("ix_callbacks_org_status_created", "organization_id", "status", "created_at", "id"),
        Index(
            "ux_callbacks_org_creation_key",
            "organization_id",
            "creation_key",
            unique=True,
            postgresql_where=_HAS_CREATION_KEY,
            sqlite_where=_HAS_CREATION_KEY,
        ),
        # The outcome pull reads only dispatched calls with no outcome yet (issue 14).
        Index(
            "ix_callbacks_outcome_pending",
            "dispatched_at",
            postgresql_where=_OUTCOME_PENDING,
            sqlite_where=_OUTCOME_PENDING,
        ),
        # `callbacks status`: outcomes of the last hour (issue 14).
        Index(
            "ix_callbacks_call_outcome_at",
            "call_outcome_at",
            postgresql_where=_HAS_OUTCOME,
            sqlite_where=_HAS_OUTCOME,
        ),
        # Platform events find their callback by the session the dial created (issue 14).
        Index(
            "ix_callbacks_created_session",
            "created_session_id",
            postgresql_where=_HAS_CREATED_SESSION,
            sqlite_where=_HAS_CREATED_SESSION,
        ),
        Index(
            "ix_callbacks_org_source_created",
            "organization_id",
            "source_session_id",
            "created_at",
            "id",
        ),
    )

    @property
    def idempotency_key(self) -> str:
        """Same for every automatic re-attempt of one dispatch; new for a manual retry."""
        return idempotency_key(self.id, self.dispatch_round)


def idempotency_key(callback_id: str, dispatch_round: int) -> str:
    """The provider's Idempotency-Key of an attempt of ``callback_id`` in ``dispatch_round``."""
    return f"{callback_id}.{dispatch_round}"


class CallbackEvent(Base):
    """Append-only history: every transition, who made it and why."""

    __tablename__ = "callback_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    callback_id: Mapped[str] = mapped_column(ForeignKey("callbacks.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JsonDocument)

    # The console's charts read the last hours of history (issue 16).
    __table_args__ = (Index("ix_callback_events_at", "at"),)


class ApiKey(Base):
    """An admin API key: belongs to one organization; only a hash of the token is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(128), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 hex of the token (tokens are 256 random bits, so no slow hash is needed)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    operator: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    """Sees every organization (issue 16); ``organization_id`` is then a placeholder."""


class Hold(Base):
    """A pause on dialing: ``provider`` (our key was rejected) or a narrower scope."""

    __tablename__ = "holds"

    scope: Mapped[str] = mapped_column(String(160), primary_key=True)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OrgConfig(Base):
    """Per-organization calling window and pacing; NULL: the settings' default applies."""

    __tablename__ = "org_configs"

    organization_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[int | None] = mapped_column(Integer)
    """Minutes after local midnight (480 = 08:00)."""
    window_end: Mapped[int | None] = mapped_column(Integer)
    """Minutes after local midnight, exclusive (1260 = 21:00; below start: across midnight)."""
    window_days: Mapped[int | None] = mapped_column(Integer)
    """Bit mask of the days the window opens, bit 0 = Monday."""
    timezone: Mapped[str | None] = mapped_column(String(64))
    """IANA zone used for callees without ``metadata.timezone`` (instead of the number's)."""
    max_concurrent: Mapped[int | None] = mapped_column(Integer)
    """Callbacks ``dispatching`` at once for this organization (0: unlimited)."""
    max_concurrent_per_number: Mapped[int | None] = mapped_column(Integer)
    """Callbacks ``dispatching`` at once per ``phone_number_id`` (0: unlimited)."""
    max_dials_per_minute: Mapped[int | None] = mapped_column(Integer)
    """Sustained claim rate for this organization (0: unlimited)."""
    # --- redials (issue 14; NULL: REDIAL_MAX / REDIAL_ON / REDIAL_INTERVALS apply) ---
    redial_max: Mapped[int | None] = mapped_column(Integer)
    redial_on: Mapped[str | None] = mapped_column(String(64))
    """Comma-separated outcomes that get a redial, e.g. ``no_answer,busy``."""
    redial_intervals: Mapped[str | None] = mapped_column(String(128))
    """Comma-separated waits after the outcome, e.g. ``30m,2h`` (the last repeats)."""
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OrgPacing(Base):
    """Runtime state of an organization's dial-rate token bucket (written by the claim)."""

    __tablename__ = "org_pacing"

    organization_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    refilled_at: Mapped[datetime] = mapped_column(UTCDateTime)


# The fair claim: a skip-scan to the next organization with scheduled work, then its
# oldest due rows in (due_at, scheduled_at) order, so a released backlog goes out in order.
Index(
    "ix_callbacks_org_due",
    Callback.organization_id,
    Callback.due_at,
    Callback.scheduled_at,
    Callback.id,
    postgresql_where=_SCHEDULED,
    sqlite_where=_SCHEDULED,
)

# The console's search by phone number (GET /v1/callbacks?to_number=, issue 16), newest
# first and paged by cursor: without it a rare number scans every row of its organization.
Index(
    "ix_callbacks_org_number_created",
    Callback.organization_id,
    Callback.to_number,
    Callback.created_at,
    Callback.id,
)


# An operator's list across organizations, newest first (the console, issue 16).
Index("ix_callbacks_created", Callback.created_at, Callback.id)


class ConsoleSession(Base):
    """A signed-in console: the cookie's SHA-256, the key behind it, its CSRF token."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ConsoleAudit(Base):
    """Reads worth a record that are no transition: phone numbers shown unmasked."""

    __tablename__ = "console_audit"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    key_id: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JsonDocument)


class PlatformEvent(Base):
    """A webhook from the platform (``POST /webhooks/speko``), stored before it is
    acknowledged and processed after: ``processed_at`` NULL is work still to do."""

    __tablename__ = "platform_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    webhook_id: Mapped[str] = mapped_column(String(256), unique=True)
    """The ``webhook-id`` header: the same delivery again is the same row."""
    type: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    """The body as received (``type``, ``timestamp``, ``data``)."""
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str | None] = mapped_column(String(32))
    """What processing did (worker/platform_events/process.py: Result)."""
    error: Mapped[str | None] = mapped_column(Text)
    """Why it did nothing, when that is worth an operator's look (an invalid callback)."""
    callback_id: Mapped[str | None] = mapped_column(String(40))
    """The callback it created or informed, if any."""

    __table_args__ = (
        Index(
            "ix_platform_events_unprocessed",
            "received_at",
            postgresql_where=_UNPROCESSED,
            sqlite_where=_UNPROCESSED,
        ),
        Index("ix_platform_events_processed", "processed_at"),
    )


# --- callback webhooks out (issue 15): endpoints, the outbox, deliveries and attempts ---


class WebhookEndpoint(Base):
    """Where an organization wants its ``callback.*`` events, and the secret that signs them."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(128), index=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JsonDocument)
    """Event types sent to it; empty: all."""
    description: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))
    """``whsec_...``, stored as is (README "Callback webhooks": why not encrypted)."""
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    """The secret before the last rotation: still signs until ``previous_secret_until``."""
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """First failed attempt since the last success (NULL: healthy)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookEvent(Base):
    """The outbox: one row per event, written in the transaction of the move it reports."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    """``msg_...``: the ``webhook-id`` of every attempt of every delivery of this event."""
    organization_id: Mapped[str] = mapped_column(String(128))
    callback_id: Mapped[str] = mapped_column(String(40), index=True)
    type: Mapped[str] = mapped_column(String(40))
    sequence: Mapped[int] = mapped_column(Integer)
    """1, 2, ... per callback: the order its events happened in."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    """The body exactly as sent: ``{"type", "timestamp", "data"}``."""


class WebhookDelivery(Base):
    """One event to one endpoint: ``pending`` until ``delivered`` or ``failed``."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    organization_id: Mapped[str] = mapped_column(String(128))
    callback_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(40))
    sequence: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When it may next be sent (NULL once delivered or failed)."""
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Handed to a worker until then: not handed out again meanwhile."""
    last_response_status: Mapped[int | None] = mapped_column(Integer)
    next_trigger: Mapped[str] = mapped_column(String(16), default="automatic")
    """How the next attempt is logged: ``manual`` after a redeliver, else ``automatic``."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        # The claim's ORDER BY, in index order: it stops at the first due one (migration
        # 0010: 19 ms -> 0.1 ms per claim at 20,000 pending to one endpoint).
        Index(
            "ix_webhook_deliveries_due",
            "endpoint_id",
            "next_attempt_at",
            "sequence",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        # The deliveries in flight (leased), counted per endpoint at every claim.
        Index(
            "ix_webhook_deliveries_leased",
            "endpoint_id",
            "leased_until",
            postgresql_where=text("status = 'pending' AND leased_until IS NOT NULL"),
            sqlite_where=text("status = 'pending' AND leased_until IS NOT NULL"),
        ),
        Index("ix_webhook_deliveries_order", "endpoint_id", "callback_id", "sequence"),
        Index("ix_webhook_deliveries_org_created", "organization_id", "created_at", "id"),
    )


class WebhookAttempt(Base):
    """One try of a delivery: the delivery log."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt_number: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(16))
    """``automatic`` or ``manual`` (a redeliver)."""
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    response_status: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
