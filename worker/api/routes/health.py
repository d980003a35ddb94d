"""``/healthz`` (the process answers) and ``/readyz`` (its database and broker do too)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from worker.api.deps import Context
from worker.api.errors import UNAVAILABLE, envelope

router = APIRouter()


# HEAD too: what many load balancers send (the server drops the body).
@router.api_route("/healthz", methods=["GET", "HEAD"])
def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.api_route("/readyz", methods=["GET", "HEAD"])
def readyz(ctx: Context) -> JSONResponse:
    down = ctx.readiness.unreachable()
    if down:
        return envelope(503, f"Not ready: {' and '.join(down)} unreachable", UNAVAILABLE)
    return JSONResponse({"status": "ok", "database": "ok", "broker": "ok"})
