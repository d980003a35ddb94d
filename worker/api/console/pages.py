"""The signed-in pages."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from worker.api.console.web import PATH, current, render, to_login
from worker.api.deps import Context

router = APIRouter(prefix=PATH, include_in_schema=False)


@router.get("")
def home(request: Request, ctx: Context) -> Response:
    who = current(ctx, request)
    if who is None:
        return to_login(request)
    return render(request, "home.html", who=who, title="Console")
