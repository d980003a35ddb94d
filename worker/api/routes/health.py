"""``/healthz`` (the process answers) and ``/readyz`` (its database and broker do too)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from worker.api.deps import Context
from worker.api.errors import UNAVAILABLE, envelope

log = logging.getLogger(__name__)

router = APIRouter()


# HEAD too: what many load balancers send (the server drops the body).
@router.api_route("/healthz", methods=["GET", "HEAD"])
def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.api_route("/readyz", methods=["GET", "HEAD"])
def readyz(ctx: Context) -> JSONResponse:
    down = []
    try:
        with ctx.sessions() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("not ready: database unreachable (%s)", type(exc).__name__)
        down.append("database")
    try:
        ctx.broker_probe()
    except Exception as exc:
        log.warning("not ready: broker unreachable (%s)", type(exc).__name__)
        down.append("broker")
    if down:
        return envelope(503, f"Not ready: {' and '.join(down)} unreachable", UNAVAILABLE)
    return JSONResponse({"status": "ok", "database": "ok", "broker": "ok"})
