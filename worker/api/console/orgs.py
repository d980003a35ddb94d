"""Organization settings pages: view and edit, with the CLI's validation."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from worker.api.console.web import (
    PATH,
    Form,
    csrf_valid,
    current,
    forbidden,
    not_found,
    redirect,
    render,
    to_login,
)
from worker.api.deps import Context
from worker.console import orgs
from worker.console.orgs import Defaults
from worker.settings import Settings

router = APIRouter(prefix=PATH, include_in_schema=False)
FIELDS = (
    "window_start",
    "window_end",
    "window_days",
    "timezone",
    *orgs.CAPS,
    "redial_max",
    "redial_on",
    "redial_intervals",
)


def defaults_from(settings: Settings) -> Defaults:
    """The worker's defaults: what an organization without settings of its own gets."""
    return Defaults(settings.pacing, settings.redial_defaults)


def _defaults(request: Request) -> Defaults:
    return cast(Defaults, request.app.state.console_defaults)


@router.get("/orgs")
def org_list(request: Request, ctx: Context) -> Response:
    who = current(ctx, request)
    if who is None:
        return to_login(request)
    if who.viewer.organization_id is not None:
        return redirect(f"{PATH}/orgs/{quote(who.viewer.organization_id, safe='')}")
    wanted = (request.query_params.get("organization_id") or "").strip()
    if wanted:
        return redirect(f"{PATH}/orgs/{quote(wanted, safe='')}")
    with ctx.sessions() as session:
        names = orgs.configured(session)
    return render(request, "orgs.html", who=who, title="Organizations", nav="orgs", names=names)


def _page(request: Request, ctx: Context, org: str, **extra: Any) -> Response:
    who = current(ctx, request)
    assert who is not None
    with ctx.sessions() as session:
        seen = orgs.view(session, org, _defaults(request))
    return render(
        request,
        "org.html",
        who=who,
        title=f"Organization {org}",
        nav="orgs",
        org=org,
        v=seen,
        **extra,
    )


@router.get("/orgs/{org}")
def org_page(request: Request, ctx: Context, org: str) -> Response:
    who = current(ctx, request)
    if who is None:
        return to_login(request)
    if not who.viewer.sees(org):
        return not_found(request, who, "No such organization for this key.")
    return _page(request, ctx, org, saved=request.query_params.get("saved") == "1")


@router.post("/orgs/{org}")
def org_save(request: Request, ctx: Context, org: str, form: Form) -> Response:
    who = current(ctx, request)
    if who is None:
        return to_login(request)
    if not csrf_valid(request, who, form):
        return forbidden(request, who)
    if not who.viewer.sees(org) or not org.strip() or len(org) > 128:
        return not_found(request, who, "No such organization for this key.")
    given = {k: str(form.get(k, "")) for k in FIELDS}
    try:
        values = orgs.parse(given, allow_overnight=form.get("allow_overnight") == "yes")
    except orgs.Invalid as exc:
        response = _page(request, ctx, org, problems=exc.problems, given=given)
        response.status_code = 400
        return response
    with ctx.sessions.begin() as session:
        orgs.save(session, who.viewer, org, values, now=ctx.clock.now())
    return redirect(f"{PATH}/orgs/{quote(org, safe='')}?saved=1")
