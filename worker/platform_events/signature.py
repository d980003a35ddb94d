"""Standard Webhooks verification of the platform's deliveries, with the reference
implementation (``standardwebhooks``): HMAC-SHA256 over ``id.timestamp.body``, compared in
constant time, a timestamp more than 5 minutes from now refused.

Several secrets may be configured (rotation): a delivery is genuine if any one verifies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError

PREFIX = "whsec_"


class BadSignature(Exception):
    """Missing or wrong signature headers, or a timestamp too far from now."""


def parse_secrets(value: str) -> list[Webhook]:
    """``SPEKO_WEBHOOK_SECRET``: ``whsec_<base64>`` secrets separated by spaces."""
    hooks = []
    for number, secret in enumerate(value.split(), start=1):
        if not secret.startswith(PREFIX):
            raise ValueError(f"secret {number} must start with {PREFIX!r}")
        try:
            hooks.append(Webhook(secret))
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
