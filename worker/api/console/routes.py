"""The console's routes: thin adapters from a request to :mod:`worker.console` and back."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from worker.api.console.web import (
    COOKIE,
    HERE,
    LOGIN_COOKIE,
    PATH,
    Form,
    current,
    forbidden,
    new_login_token,
    redirect,
    render,
    same_origin,
    set_session_cookie,
)
from worker.api.deps import Context
from worker.console import sessions

router = APIRouter(prefix=PATH, include_in_schema=False)
STYLESHEET = (HERE / "static" / "console.css").read_bytes()
SCRIPT = (HERE / "static" / "console.js").read_bytes()


@router.get("/static/console.css")
def stylesheet() -> Response:
    return Response(
        STYLESHEET,
        media_type="text/css",
        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/static/console.js")
def script() -> Response:
    return Response(
        SCRIPT,
        media_type="text/javascript",
        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/login")
def login_page(request: Request, ctx: Context) -> HTMLResponse:
    return _login_form(request)


def _login_form(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    token = new_login_token()
    response = render(request, "login.html", csrf=token, error=error, status_code=status)
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/login")
def login(request: Request, ctx: Context, form: Form) -> Response:
    given = form.get("csrf")
    expected = request.cookies.get(LOGIN_COOKIE)
    if (
        not same_origin(request)
        or expected is None
        or not isinstance(given, str)
        or not sessions.csrf_ok(expected, given)
    ):
        return _login_form(
            request, "The form had expired or did not come from this page. Try again.", 403
        )
    api_key = form.get("api_key")
    with ctx.sessions.begin() as session:
        started = (
            sessions.sign_in(session, api_key, now=ctx.clock.now())
            if isinstance(api_key, str)
            else None
        )
    if started is None:
        return _login_form(request, "That API key is not valid (unknown or revoked).", 401)
    token, who = started
    response = redirect(PATH)
    set_session_cookie(
        response, request, token, int((who.expires_at - ctx.clock.now()).total_seconds())
    )
    response.delete_cookie(LOGIN_COOKIE, path=PATH)
    return response


@router.post("/logout")
def logout(request: Request, ctx: Context, form: Form) -> Response:
    who = current(ctx, request)
    if who is not None:
        given = form.get("csrf")
        if not same_origin(request) or not sessions.csrf_ok(
            who.csrf, given if isinstance(given, str) else None
        ):
            return forbidden(request, who)
        with ctx.sessions.begin() as session:
            sessions.sign_out(session, request.cookies.get(COOKIE))
    response = redirect(f"{PATH}/login")
    response.delete_cookie(COOKIE, path=PATH)
    return response
