"""Configuration from the environment (pydantic-settings).

Every variable has a default that selects the embedded mode (SQLite file, file-backed
broker, log-only dialer), so ``callbacks run`` works on a machine with only Python.
Invalid values stop start-up with the variable's name and the reason.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AnyHttpUrl, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.datetimes import MAX_LATENESS_SECONDS
from worker.webhooks.addresses import Allowed

if TYPE_CHECKING:
    from worker.pacing.limits import Pacing
    from worker.redials import RedialPolicy

PositiveSeconds = Annotated[float, Field(gt=0)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # contract names (DESIGN.md)
    database_url: str = ""
    broker_url: str = ""
    speko_api_url: AnyHttpUrl | None = None
    speko_api_key: str | None = Field(default=None, repr=False)
    dialer: Literal["auto", "speko", "log"] = "auto"
    """Who places calls. ``auto``: the platform (``SPEKO_API_URL``) when set; else, in the
    embedded mode only, the log-only dialer; a worker outside it refuses to start.
    ``log``: place nothing, only log (demos, tests); ``speko``: require the platform."""

    # where the embedded default keeps its SQLite file and broker folders
    data_dir: Path = Path(".callbacks")

    poll_interval: PositiveSeconds = 1.0
    poll_batch_size: int = Field(default=100, ge=1, le=10_000)
    poll_max_per_tick: int = Field(default=2_000, ge=1)
    dispatch_batch_size: int = Field(default=50, ge=1, le=1_000)
    """Claimed callbacks per dispatch message; a worker dials a batch's callbacks side by
    side, so a worker process has up to concurrency x this many dials in flight."""
    claim_lease: PositiveSeconds = 300.0
    """How long a claimed, not yet started callback may wait for a worker."""
    claim_window: int = Field(default=0, ge=0)
    """Claimed callbacks not yet started allowed at once, across all pollers and workers
    (backpressure: the dispatch queue is never longer than this, so a newly due callback
    waits behind at most this many). 0: WORKER_CONCURRENCY x DISPATCH_BATCH_SIZE (800)."""
    claim_window_stale: PositiveSeconds = 30.0
    """A claim not started after this long stops counting against the window (its
    message was presumed lost; the reaper still takes it back after CLAIM_LEASE)."""
    attempt_lease: PositiveSeconds | None = None
    """How long an attempt may run before the reaper calls its outcome unknown
    (default: 4 x the longest dial + 60 s; never set it below the longest dial)."""

    callback_max_lateness: float = Field(default=4 * 3600, ge=0, le=MAX_LATENESS_SECONDS)
    """Seconds after scheduled_at a callback may still be placed; later it expires (0: never)."""
    reaper_interval: PositiveSeconds = 30.0
    unknown_outcome_policy: Literal["fail", "redial-same-key"] = "fail"
    """An attempt whose outcome is unknown: fail it (never risk a second call), or re-send
    it with the same Idempotency-Key (only for a provider known to honour the key)."""
    retry_max_attempts: int = Field(default=5, ge=1)
    retry_base_delay: PositiveSeconds = 15.0
    retry_max_delay: PositiveSeconds = 900.0
    key_rejected_hold: PositiveSeconds = 120.0

    # calling windows and pacing (README "Calling windows and pacing"); per-organization
    # values in org_configs (`callbacks org-window set`) override these.
    calling_window_start: str = "08:00"
    calling_window_end: str = "21:00"
    calling_window_days: str = "daily"
    calling_fallback_timezone: str = "UTC"
    """Zone for a number whose zone phonenumbers does not know (and no other is given)."""
    # Caps are opt-in (0: unlimited). A cap counts claimed callbacks too, so it also bounds
    # an organization to about cap / POLL_INTERVAL dials a second: the default of 100
    # capped a one-organization drain at ~95/s (tests/perf), far below what the worker does.
    max_concurrent_per_org: int = Field(default=0, ge=0)
    """Callbacks ``dispatching`` at once per organization (0: unlimited)."""
    max_concurrent_per_number: int = Field(default=0, ge=0)
    """Callbacks ``dispatching`` at once per phone_number_id (0: unlimited)."""
    max_dials_per_minute_per_org: int = Field(default=0, ge=0)
    """Sustained dial (claim) rate per organization (0: unlimited)."""
    rate_limited_pause: PositiveSeconds = 5.0
    """Pause after a 429 without Retry-After; a Retry-After is honoured up to 1 hour."""
    rate_limited_scope: Literal["organization", "number"] = "organization"
    """What a 429 pauses: the organization, or only the callback's phone_number_id."""

    dialer_connect_timeout: PositiveSeconds = 3.0
    dialer_read_timeout: PositiveSeconds = 15.0
    dialer_pool_size: int = Field(default=0, ge=0)
    """Kept-alive connections to the provider per process (0: one per dial in flight)."""

    worker_pool: str = "threads"
    worker_concurrency: int = Field(default=0, ge=0)
    """0 = 16 threads against PostgreSQL, 4 on the embedded SQLite file. Each thread runs
    one dispatch batch at a time, so a worker has up to 16 x DISPATCH_BATCH_SIZE dials in
    flight: 800 by default, 4 s of a 200/s backlog at 200 ms a dial (README, Performance)."""

    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Each worker serves Prometheus metrics on this port when set."""
    metrics_token: str | None = Field(default=None, min_length=16, repr=False)
    """When set, the admin API's ``/metrics`` wants ``Authorization: Bearer <token>``;
    unset, it is public (README, Admin API: which endpoints are public and why)."""

    api_reads: Literal["loop", "threads"] = "loop"
    """Where the admin API's reads run on PostgreSQL: ``loop`` (async psycopg on the event
    loop, no hop: half the CPU per read, p99 52 ms against 146 ms for a list on a host of
    its own) or ``threads`` (the sync engine, one threadpool hop a read: the better p99
    beside busy processes sharing the CPU). README "Admin API under load". SQLite: always
    threads."""

    log_level: str = "INFO"
    log_format: Literal["json", "console"] | None = None

    # callback webhooks out (README "Callback webhooks")
    webhook_timeout: PositiveSeconds = 15.0
    """How long one delivery attempt may take before it counts as failed."""
    webhook_allow_http_hosts: str = ""
    """Hosts (comma or space separated) that may be sent to over plain http; loopback
    always may."""
    webhook_allow_private_hosts: str = ""
    """Hosts (comma or space separated) that may resolve to private, link-local or reserved
    addresses (an internal receiver); loopback always may."""
    webhook_retention: PositiveSeconds = 30 * 86400.0
    """How long events and their deliveries are kept (seconds; default 30 days)."""
    webhook_sweep_interval: PositiveSeconds = 1.0
    """How often beat hands due deliveries to workers."""
    webhook_max_in_flight_per_endpoint: int = Field(default=4, ge=1)
    """Deliveries to one endpoint at once: a slow or dead endpoint takes no more slots."""
    """Default: console lines in the embedded mode, JSON lines in production."""

    # --- the platform's call lifecycle (issue 14; DESIGN.md "second wave") ---
    speko_webhook_secret: str | None = Field(default=None, repr=False)
    """``whsec_...`` secrets (space-separated, for rotation) that sign the platform's
    webhooks to ``POST /webhooks/speko``; unset: the receiver answers 503."""
    speko_webhook_max_body: int = Field(default=2 * 1024 * 1024, ge=64 * 1024, le=64 * 1024**2)
    """The largest body ``POST /webhooks/speko`` reads (bytes; other routes keep 64 KB).
    A ``call.report`` carries the call's transcript (``transcript.entries``), its
    ``structured_data`` and ``webhook_deliveries``: about 150-250 KB for an hour of
    conversation, so the 2 MB default holds a report of many hours. A larger body is
    refused with 413 (the platform then keeps retrying it: raise the limit)."""
    platform_event_retention: PositiveSeconds = 30 * 86400.0
    """How long processed platform events are kept (seconds; default 30 days)."""
    outcome_pull_after: PositiveSeconds = 600.0
    """Seconds after dispatch without a decisive event before the worker pulls the call."""
    outcome_give_up_after: PositiveSeconds = 86400.0
    """Seconds after dispatch when pulling stops and the outcome becomes ``unknown``."""

    redial_max: int = Field(default=0, ge=0, le=10)
    """Redials per callback whose call was not answered (0: off); ``org-redial`` overrides."""
    redial_on: str = "no_answer,busy"
    """Outcomes that get a redial: among no_answer, busy, voicemail, failed."""
    redial_intervals: str = "30m,2h"
    """Waits after the outcome before each redial (s, m, h); the last repeats."""

    @field_validator("redial_on")
    @classmethod
    def _redial_on(cls, value: str) -> str:
        from worker.redials import parse_on

        parse_on(value)
        return value

    @field_validator("redial_intervals")
    @classmethod
    def _redial_intervals(cls, value: str) -> str:
        from worker.redials import parse_intervals

        parse_intervals(value)
        return value

    @property
    def pacing(self) -> Pacing:
        """Every organization's pacing and calling window unless it has its own (one
        builder for the worker, the CLI and the console)."""
        from worker.pacing.limits import Pacing
        from worker.pacing.windows import Window

        return Pacing(
            window=Window.parse(
                self.calling_window_start, self.calling_window_end, self.calling_window_days
            ),
            fallback_timezone=self.calling_fallback_timezone,
            max_concurrent=self.max_concurrent_per_org,
            max_concurrent_per_number=self.max_concurrent_per_number,
            max_dials_per_minute=self.max_dials_per_minute_per_org,
            rate_limited_pause=timedelta(seconds=self.rate_limited_pause),
            rate_limited_scope=self.rate_limited_scope,
        )

    @property
    def redial_defaults(self) -> RedialPolicy:
        from worker.redials import RedialPolicy, parse_intervals, parse_on

        return RedialPolicy(
            self.redial_max, parse_on(self.redial_on), parse_intervals(self.redial_intervals)
        )

    @field_validator("speko_webhook_secret")
    @classmethod
    def _webhook_secrets(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from worker.platform_events.signature import parse_secrets

        parse_secrets(value)
        return value

    @field_validator("worker_pool")
    @classmethod
    def _known_pool(cls, value: str) -> str:
        if value in {"gevent", "eventlet"}:
            # The dialer runs an asyncio loop in a thread of its own (worker.dialer.speko);
            # a monkey-patched process would run that "thread" as a greenlet, and the loop
            # would block every other one. threads measured faster anyway (README).
            raise ValueError(
                f"{value} is not supported: the dialer runs its own event loop thread; "
                "use threads (the default), prefork or solo"
            )
        if value not in {"threads", "prefork", "solo"}:
            raise ValueError("must be one of threads, prefork, solo")
        return value

    @model_validator(mode="after")
    def _valid_window(self) -> Settings:
        from worker.pacing.windows import Window, zone

        Window.parse(self.calling_window_start, self.calling_window_end, self.calling_window_days)
        zone(self.calling_fallback_timezone)
        return self

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value and not value.startswith(("postgresql+psycopg://", "sqlite://", "sqlite+")):
            raise ValueError("must be a postgresql+psycopg://... or sqlite:///... SQLAlchemy URL")
        return value

    @model_validator(mode="after")
    def _attempt_lease_above_dial(self) -> Settings:
        longest_dial = self.dialer_connect_timeout + self.dialer_read_timeout
        if self.attempt_lease is not None and self.attempt_lease <= longest_dial:
            # A live attempt would be taken for a dead one and failed as "outcome unknown".
            raise ValueError(
                f"ATTEMPT_LEASE must be above the longest dial ({longest_dial:g} s: "
                "DIALER_CONNECT_TIMEOUT + DIALER_READ_TIMEOUT)"
            )
        return self

    @model_validator(mode="after")
    def _key_with_url(self) -> Settings:
        if self.speko_api_url is not None and not self.speko_api_key:
            raise ValueError("SPEKO_API_KEY must be set when SPEKO_API_URL is set")
        return self

    @model_validator(mode="after")
    def _speko_needs_url(self) -> Settings:
        if self.dialer == "speko" and self.speko_api_url is None:
            raise ValueError("DIALER=speko needs SPEKO_API_URL (and SPEKO_API_KEY)")
        return self

    @property
    def effective_dialer(self) -> Literal["speko", "log"] | None:
        """The dialer a worker uses; ``None``: none configured (the worker must refuse)."""
        if self.dialer != "auto":
            return self.dialer
        if self.speko_api_url is not None:
            return "speko"
        return "log" if self.embedded else None

    @property
    def lateness(self) -> timedelta | None:
        return timedelta(seconds=self.callback_max_lateness) if self.callback_max_lateness else None

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'callbacks.db').resolve()}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def embedded(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def effective_log_format(self) -> str:
        return self.log_format or ("console" if self.embedded else "json")

    @property
    def effective_concurrency(self) -> int:
        if self.worker_concurrency:
            return self.worker_concurrency
        return 4 if self.embedded else 16

    @property
    def webhook_allowed(self) -> Allowed:
        def hosts(value: str) -> frozenset[str]:
            return frozenset(h.lower() for h in value.replace(",", " ").split())

        return Allowed(
            hosts(self.webhook_allow_http_hosts), hosts(self.webhook_allow_private_hosts)
        )

    @property
    def effective_claim_window(self) -> int:
        """CLAIM_WINDOW, or one dispatch message per worker thread: 800 by default. 200
        met the fairness target but cost the drain 5-46 % under load (claims in small
        steps could not keep the workers fed); 800 kept it (A/B against main: 0.99x) and
        still cut another organization's wait ten-fold (README, "Backpressure")."""
        return self.claim_window or self.effective_concurrency * self.dispatch_batch_size

    @property
    def dials_in_flight(self) -> int:
        """The most dials one worker process runs at once."""
        return self.effective_concurrency * self.dispatch_batch_size


class ConfigurationError(SystemExit):
    """Raised at start-up; its message names each wrong variable and why."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']).upper() or 'SETTINGS'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigurationError("invalid configuration:\n" + "\n".join(lines)) from None
