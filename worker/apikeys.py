"""Admin API keys: make, end and check them. Only a SHA-256 of each token is stored.

A token is ``sk_live_`` + 256 random bits, so a plain SHA-256 is as good as a slow hash
here: there is nothing to brute-force. The lookup is by the hash (an indexed equality),
and the stored hash is compared again in constant time, so timing reveals nothing about
how much of a guessed token matched.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from ulid import ULID

from worker.db.models import ApiKey

TOKEN_PREFIX = "sk_live_"  # noqa: S105  (a public prefix, not a secret)
KEY_PREFIX = "key_"
# Longer than any token we issue, with room to spare; longer input is refused unhashed.
MAX_TOKEN_LENGTH = 256
OPERATOR_ORG = " operator "
"""An operator key's ``organization_id``: no organization can have it (every way in
strips surrounding spaces), so code that scopes by a key's organization and does not know
operators shows such a key nothing, never someone else's callbacks."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_key(
    session: Session, organization_id: str | None, *, now: datetime, operator: bool = False
) -> tuple[ApiKey, str]:
    """Store a new key for ``organization_id`` (or an operator key, which sees every
    organization: ``organization_id`` is then ``None``); return it and its token (shown
    once)."""
    if operator == (organization_id is not None):
        raise ValueError("a key is either an organization's or an operator's")
    token = new_token()
    key = ApiKey(
        id=KEY_PREFIX + str(ULID()).lower(),
        organization_id=OPERATOR_ORG if organization_id is None else organization_id,
        token_hash=hash_token(token),
        created_at=now,
        revoked_at=None,
        operator=operator,
    )
    session.add(key)
    session.flush()
    return key, token


def revoke_key(session: Session, key_id: str, *, now: datetime) -> bool:
    """End a key; ``False`` if there is no such key. Revoking twice keeps the first time."""
    found = session.scalar(select(ApiKey.id).where(ApiKey.id == key_id))
    if found is None:
        return False
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return True


def verify(session: Session, token: str) -> ApiKey | None:
    """The live key this token belongs to, or ``None`` (unknown, revoked or malformed)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
        return None
    digest = hash_token(token)
    key = session.scalar(select(ApiKey).where(ApiKey.token_hash == digest))
    if key is None or not hmac.compare_digest(key.token_hash, digest):
        return None
    if key.revoked_at is not None:
        return None
    return key
