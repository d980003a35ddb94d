"""Standard Webhooks verification of the platform's deliveries, with the reference
implementation (``standardwebhooks``): HMAC-SHA256 over ``id.timestamp.body``, compared in
constant time, a timestamp more than 5 minutes from now refused.

"Now" is the injected clock's (worker.clock), not the wall clock the package reads: the
package checks the timestamp in one private method, which :class:`ClockedWebhook`
overrides; the signature itself is still computed and compared by the package.

Several secrets may be configured (rotation): a delivery is genuine if any one verifies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError

PREFIX = "whsec_"
TOLERANCE = timedelta(minutes=5)
"""How far a delivery's ``webhook-timestamp`` may be from now (the package's own value)."""

Now = Callable[[], datetime]


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class BadSignature(Exception):
    """Missing or wrong signature headers, or a timestamp too far from now."""


class ClockedWebhook(Webhook):
    """The package's ``Webhook`` with its timestamp window read from ``now``.

    ``Webhook.verify`` calls ``self.__verify_timestamp`` (name-mangled to
    ``_Webhook__verify_timestamp``); defining that name here replaces only the window
    check and keeps the package's signature code. tests/unit/platform_events pins this
    down: a timestamp current by the injected clock but hours from the wall clock
    verifies, and the reverse is refused, so an upgrade that renames the method fails
    a test rather than silently falling back to the wall clock.
    """

    def __init__(self, secret: str, now: Now) -> None:
        super().__init__(secret)
        self._now = now

    def _Webhook__verify_timestamp(self, timestamp_header: str) -> datetime:
        try:
            timestamp = datetime.fromtimestamp(float(timestamp_header), tz=UTC)
        except (ValueError, OverflowError, OSError):
            raise WebhookVerificationError("Invalid Signature Headers") from None
        now = self._now()
        if timestamp < now - TOLERANCE:
            raise WebhookVerificationError("Message timestamp too old")
        if timestamp > now + TOLERANCE:
            raise WebhookVerificationError("Message timestamp too new")
        return timestamp


def parse_secrets(value: str, now: Now = _wall_clock) -> list[Webhook]:
    """``SPEKO_WEBHOOK_SECRET``: ``whsec_<base64>`` secrets separated by spaces, each
    checking timestamps against ``now`` (the API passes its clock's)."""
    hooks: list[Webhook] = []
    for number, secret in enumerate(value.split(), start=1):
        if not secret.startswith(PREFIX):
            raise ValueError(f"secret {number} must start with {PREFIX!r}")
        try:
            hooks.append(ClockedWebhook(secret, now))
        except (ValueError, EmptyWebhookSecretError) as exc:
            raise ValueError(f"secret {number} is not {PREFIX}<base64>: {exc}") from None
    if not hooks:
        raise ValueError(f"give at least one {PREFIX}... secret")
    return hooks


def verify(hooks: Sequence[Webhook], body: bytes, headers: Mapping[str, str]) -> None:
    """Return if one of ``hooks`` signed ``body`` with these headers; else BadSignature.

    The signature covers the raw bytes as received: the body is not parsed before this.
    """
    wanted = {
        k: headers[k]
        for k in ("webhook-id", "webhook-timestamp", "webhook-signature")
        if k in headers
    }
    reason = "no signature"
    for hook in hooks:
        try:
            hook.verify(body, wanted, json_parse=False)
            return
        except WebhookVerificationError as exc:
            reason = str(exc)
        except (ValueError, UnicodeDecodeError):
            # A malformed signature list ("v1" without a comma, bad base64) or a body
            # that is not UTF-8: nothing a genuine sender signs.
            reason = "malformed signature header or body"
    raise BadSignature(reason)
