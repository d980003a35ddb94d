"""The two hot reads' plain case, answered before FastAPI's stack: routing, dependency
solving, parameter validation and six middleware layers were over a quarter of a get's
CPU under wrk (README "Admin API under load").

Only a request that can have exactly one answer, 200, is served here: ``GET
/v1/callbacks/<id>`` with no query, or ``GET /v1/callbacks`` with at most ``limit``
(plain decimal, 1-100), no body, a path as sent (nothing percent-encoded), and a bearer
key of an organization this process verified within the last 5 s (``worker.api.auth``'s
cache). The read
is the routes' own (``ApiContext.reader``). Anything else, or any failure of the read
(not found, database down, ...), goes to the full app, which answers as it always has:
so every error, envelope and header stays the routes' own, by construction.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.api import reads
from worker.api.auth import bearer_token, key_cache
from worker.api.deps import ApiContext
from worker.apikeys import MAX_TOKEN_LENGTH, hash_token

_ONE = re.compile(r"/v1/callbacks/([^/%\\]+)")
_LIMIT = re.compile(rb"limit=([1-9][0-9]?|100)")
_NO_FILTERS = reads.ListFilter()


class FastReads:
    """ASGI middleware, outermost: the plain case of the two reads, else ``app``."""

    def __init__(self, app: ASGIApp, fastapi: FastAPI) -> None:
        self.app = app
        self.fastapi = fastapi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            body = await self._plain_read(scope)
            if body is not None:
                await Response(body, media_type="application/json")(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _plain_read(self, scope: Scope) -> bytes | None:
        """The document of a plain read, or ``None``: the full app answers."""
        path: str = scope["path"]
        raw_path: bytes | None = scope.get("raw_path")
        if raw_path is not None and raw_path.decode("latin-1") != path:
            return None  # anything percent-encoded: Edge and the router decide
        query: bytes = scope.get("query_string", b"")
        one = _ONE.fullmatch(path)
        if one is not None:
            if query:
                return None
        elif path != "/v1/callbacks" or (query and not _LIMIT.fullmatch(query)):
            return None
        request = Request(scope)
        if "content-length" in request.headers or "transfer-encoding" in request.headers:
            return None  # a GET with a body: the full app reads and bounds it
        token = bearer_token(request)
        if token is None or len(token) > MAX_TOKEN_LENGTH:
            return None
        key = key_cache(self.fastapi).get(hash_token(token))
        if key is None or key.operator:
            # Not verified lately: the full app looks it up (and remembers it). An operator
            # key reads across organizations (worker.api.operators): the routes decide.
            return None
        ctx: ApiContext = self.fastapi.state.context
        try:
            if one is not None:
                return await ctx.reader.callback(key.organization_id, one.group(1))
            limit = int(query[6:]) if query else 25
            return await ctx.reader.page(key.organization_id, _NO_FILTERS, limit=limit, cursor=None)
        except Exception:  # the full app answers it, as it always has
            return None
