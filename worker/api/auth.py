"""``Authorization: Bearer <key>``: which organization the caller acts for.

Missing, malformed, unknown and revoked keys get the same 401, so a caller learns
nothing about which keys exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from worker.api.deps import Context
from worker.api.errors import Unauthorized
from worker.apikeys import verify
from worker.db.models import ApiKey


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    # The scheme is case-insensitive (RFC 9110 §11.1).
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def require_key(request: Request, ctx: Context) -> ApiKey:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized()
    with ctx.sessions() as session:
        key = verify(session, token)
    if key is None:
        raise Unauthorized()
    return key


Caller = Annotated[ApiKey, Depends(require_key)]
