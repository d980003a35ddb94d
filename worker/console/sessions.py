"""Console sign-in: an API key becomes a server-side session behind a random cookie.

Server-side, not a signed cookie: sign-out and ``callbacks api-key revoke`` end a session
at once in every API process, and no secret has to be shared between those processes.
Only a SHA-256 of the cookie is stored (like API keys: 256 random bits need no slow
hash). Each session has its own CSRF token, checked on every form the console posts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from worker.apikeys import verify
from worker.console.viewers import Viewer, viewer_of
from worker.db.models import ApiKey, ConsoleSession

LIFETIME = timedelta(hours=8)
"""A working day: then the operator signs in again."""
MAX_COOKIE = 128


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    viewer: Viewer
    csrf: str
    expires_at: datetime


def sign_in(
    session: Session, api_key: str, *, now: datetime, lifetime: timedelta = LIFETIME
) -> tuple[str, SignedIn] | None:
    """A new session for a live key: its cookie value (shown to the browser only) and
    what it grants; ``None`` for an unknown, revoked or malformed key."""
    key = verify(session, api_key.strip())
    if key is None:
        return None
    token = secrets.token_urlsafe(32)
    row = ConsoleSession(
        id=_digest(token),
        key_id=key.id,
        csrf=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    # Sessions that ran out are swept here, on sign-in, rather than by a job of their own.
    session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
    session.flush()
    return token, SignedIn(viewer_of(key), row.csrf, row.expires_at)


def current(session: Session, cookie: str | None, *, now: datetime) -> SignedIn | None:
    """The session behind a cookie, if it is live and its key is not revoked."""
    if not cookie or len(cookie) > MAX_COOKIE:
        return None
    found = session.execute(
        select(ConsoleSession, ApiKey)
        .join(ApiKey, ApiKey.id == ConsoleSession.key_id)
        .where(ConsoleSession.id == _digest(cookie))
    ).first()
    if found is None:
        return None
    row, key = found
    if row.expires_at <= now or key.revoked_at is not None:
        return None
    return SignedIn(viewer_of(key), row.csrf, row.expires_at)


def sign_out(session: Session, cookie: str | None) -> None:
    if cookie and len(cookie) <= MAX_COOKIE:
        session.execute(delete(ConsoleSession).where(ConsoleSession.id == _digest(cookie)))


def csrf_ok(expected: str, given: str | None) -> bool:
    """Constant-time: timing tells nothing about how much of a guess matched."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
