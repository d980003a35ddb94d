"""What every request goes through before a route sees it: the path as sent, a bounded
body, an unambiguous query. Each refusal is the ``{error, code}`` envelope and happens
before anything is read from or written to the database.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.api.errors import ValidationFailed, envelope

MAX_BODY = 64 * 1024
"""The largest body any route takes (a cancel body is one short string)."""

_PLAIN_INT = re.compile(r"-?(0|[1-9][0-9]*)")


def segments_intact(raw_path: bytes, path: str) -> bool:
    """Whether the path routed on is the path as sent, each segment decoded once, and no
    segment decodes to a separator.

    Servers decode ``%2F`` into ``scope["path"]`` before routing, so ``<id>%2Fcancel``
    would route as ``<id>/cancel``: an id must be one segment (a backslash is refused
    too: some proxies normalise it to a slash). A path decoded twice (``%252F``) by
    whatever sits in front differs from the one sent and is refused as well.
    """
    sent = raw_path.decode("latin-1")
    if unquote(sent) != path:
        return False
    for segment in sent.split("/"):
        if "%" in segment and ("/" in unquote(segment) or "\\" in unquote(segment)):
            return False
    return True


class Edge:
    """ASGI middleware: refuse a path with an encoded separator (404) and a body over
    ``max_body`` (413) without reading past the limit; hand the app the body it read.

    ``limits`` gives a path its own limit instead (``POST /webhooks/speko``: a call report
    carries its transcript, far over what an admin request ever sends). The body is read
    chunk by chunk and refused as soon as it passes the limit, whatever the limit.
    """

    def __init__(
        self, app: ASGIApp, max_body: int = MAX_BODY, limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.limits = dict(limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path = scope.get("raw_path")
        if raw_path is not None and not segments_intact(raw_path, scope["path"]):
            await envelope(404, "Not found", "NOT_FOUND")(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.max_body)
        too_large = envelope(
            413, f"Request body too large: at most {limit} bytes", "PAYLOAD_TOO_LARGE"
        )
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await too_large(scope, receive, send)
            return
        # Read at most the limit (+ one chunk) into memory, then stop: the rest is never read.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([], message, receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(chunks, None, receive), send)


def _replay(chunks: list[bytes], pending: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read as one message, then defers to the
    server's (for ``http.disconnect``)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if pending is not None and not sent:
            sent = True
            return pending
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        return await receive()

    return replay


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (list, tuple, set) or any(
        _is_list(arg) for arg in typing.get_args(annotation)
    )


def _is_int(annotation: Any) -> bool:
    if annotation is int:
        return True
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return union and any(_is_int(arg) for arg in typing.get_args(annotation))


async def strict_query(request: Request) -> None:
    """Refuse what a lenient parser would guess at, for every query parameter a route
    declares: a repeated parameter (the last would win) and integers in any but plain
    decimal form (``1_0``, ``+5``, ``05``, `` 5``). Free-text filters take any string the
    contract allows (one no stored id can match finds nothing); undeclared parameters
    are ignored, as before (forward-compatible clients).

    async: a sync dependency costs every request a hop to the threadpool and back."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    declared = {field.alias: field for field in getattr(dependant, "query_params", ())}
    if not declared:
        return
    seen: set[str] = set()
    for name, value in request.query_params.multi_items():
        field = declared.get(name)
        if field is None:
            continue
        annotation = field.field_info.annotation
        if name in seen and not _is_list(annotation):
            raise ValidationFailed(f"Invalid request: {name}: given more than once")
        seen.add(name)
        if _is_int(annotation) and not _PLAIN_INT.fullmatch(value):
            raise ValidationFailed(
                f"Invalid request: {name}: must be a plain decimal integer "
                "(no +, _, spaces or leading zeros)"
            )
