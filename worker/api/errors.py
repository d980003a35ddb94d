"""Every error as ``{"error": "...", "code": "..."}`` — never a framework's default body.

Known failures map to their status here. Anything else becomes a bare 500, logged as
one line at ERROR (the traceback only at DEBUG), so no stack trace reaches a client or
the INFO log.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.actions import CallbackNotFound, PublishFailed, StatusConflict, UnconfirmedRedial

log = logging.getLogger(__name__)

UNAVAILABLE = "SERVICE_UNAVAILABLE"
DATABASE_RETRY_AFTER = "2"
"""Seconds: a restart or failover is back in a few (tests/chaos/failover.py)."""
HTTP_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    503: UNAVAILABLE,
}


def envelope(
    status: int, error: str, code: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "code": code}, status_code=status, headers=headers)


class ApiError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "VALIDATION_ERROR"
    headers: ClassVar[dict[str, str] | None] = None

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class ValidationFailed(ApiError):
    pass


class Unauthorized(ApiError):
    status = 401
    code = "UNAUTHORIZED"
    headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "Bearer"}

    def __init__(self) -> None:
        super().__init__("Unauthorized")


class Unavailable(ApiError):
    status = 503
    code = UNAVAILABLE
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": DATABASE_RETRY_AFTER}


def describe(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path"))
        problems.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    return "Invalid request: " + "; ".join(problems) if problems else "Invalid request"


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return envelope(exc.status, exc.error, exc.code, exc.headers)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return envelope(400, describe(exc), "VALIDATION_ERROR")


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    error = "Not found" if exc.status_code == 404 else str(exc.detail)
    return envelope(exc.status_code, error, code, dict(exc.headers or {}))


async def _not_found(_: Request, exc: Exception) -> JSONResponse:
    # The same answer whether the id is missing or another organization's (invariant 8).
    return envelope(404, "Callback not found", "NOT_FOUND")


async def _conflict(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StatusConflict)
    return envelope(409, f"Cannot {exc.action} a callback that is {exc.current}", "CONFLICT")


async def _unconfirmed_redial(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UnconfirmedRedial)
    log.warning(
        "callback %s: dispatch refused with 409: outcome unknown, no force", exc.callback_id
    )
    return envelope(409, str(exc), "CONFLICT")


async def _publish_failed(_: Request, exc: Exception) -> JSONResponse:
    log.warning("dispatch refused with 503: broker unreachable (%s)", exc)
    return envelope(
        503,
        "Broker unavailable: the callback was not dispatched, try again",
        UNAVAILABLE,
        headers={"Retry-After": DATABASE_RETRY_AFTER},
    )


async def _database(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SQLAlchemyError)
    unreachable = isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )
    if unreachable:
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        log.warning("answering 503: database unavailable (%s)", type(cause).__name__)
        return envelope(
            503,
            "Database unavailable, try again",
            UNAVAILABLE,
            headers={"Retry-After": DATABASE_RETRY_AFTER},
        )
    log.error("database error answered with 500: %s", type(exc).__name__)
    log.debug("database error", exc_info=exc)
    return envelope(500, "Internal error", "INTERNAL_ERROR")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(CallbackNotFound, _not_found)
    app.add_exception_handler(StatusConflict, _conflict)
    app.add_exception_handler(UnconfirmedRedial, _unconfirmed_redial)
    app.add_exception_handler(PublishFailed, _publish_failed)
    app.add_exception_handler(SQLAlchemyError, _database)
    app.add_middleware(CatchAll)


class CatchAll:
    """The last net: any other exception is a bare 500 envelope, and is not re-raised
    (Starlette's own handler for ``Exception`` re-raises, and uvicorn then logs a trace)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.error("unhandled %s on %s %s", type(exc).__name__, scope["method"], scope["path"])
            log.debug("unhandled error", exc_info=exc)
            if not started:
                await envelope(500, "Internal error", "INTERNAL_ERROR")(scope, receive, send)


class Conflict(ApiError):
    """409 for what the resource's state refuses (an idempotency key used for another body)."""

    status = 409
    code = "CONFLICT"
