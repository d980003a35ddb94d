"""What every console page needs: the templates, the session cookie, the CSRF check."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import FormData

from worker.api.deps import ApiContext
from worker.console import sessions
from worker.console.sessions import SignedIn


async def form_fields(request: Request) -> FormData:
    return await request.form()


Form = Annotated[FormData, Depends(form_fields)]
"""A console form's fields (every form route checks its CSRF token with :func:`csrf_valid`)."""

HERE = Path(__file__).parent
COOKIE = "callbacks_console"
LOGIN_COOKIE = "callbacks_console_login"
"""Before sign-in there is no session: the login form's CSRF token is a double-submit
cookie (an attacker's page can neither read it nor set it for this origin)."""
PATH = "/console"

SECURITY_HEADERS = {
    # Nothing from another origin, no inline script, forms post only here, never framed.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Filtered URLs name phone numbers and ids: not for other sites' logs. (Not
    # no-referrer: with it Chromium sends "Origin: null" on the console's own forms.)
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _mask(number: str | None) -> str:
    if not number:
        return ""
    return "•" * max(len(number) - 4, 0) + number[-4:]


def _when(value: Any) -> str:
    """To the second, in UTC: the page says so once, in its headings."""
    if not isinstance(value, datetime):
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["mask"] = _mask
templates.filters["when"] = _when
templates.globals["urlencode"] = urlencode


def secure(request: Request) -> bool:
    """Behind https (directly or per the proxy's ``X-Forwarded-Proto``): Secure cookies."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def render(
    request: Request,
    name: str,
    *,
    who: SignedIn | None = None,
    status_code: int = 200,
    **values: Any,
) -> HTMLResponse:
    html = templates.get_template(name).render(request=request, who=who, **values)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def redirect(url: str) -> RedirectResponse:
    # 303: the browser follows a form's POST with a GET (no re-post on reload).
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def current(ctx: ApiContext, request: Request) -> SignedIn | None:
    with ctx.sessions.begin() as session:
        return sessions.current(session, request.cookies.get(COOKIE), now=ctx.clock.now())


def to_login(request: Request) -> RedirectResponse:
    return redirect(f"{PATH}/login")


def same_origin(request: Request) -> bool:
    """A browser names the page a POST came from; one from another site is refused even
    before the token is looked at (defence in depth beside SameSite=Strict and CSRF)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        # Not said (or hidden by a privacy setting): the CSRF token alone decides.
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def csrf_valid(request: Request, who: SignedIn, form: FormData) -> bool:
    token = form.get("csrf")
    return same_origin(request) and sessions.csrf_ok(
        who.csrf, token if isinstance(token, str) else None
    )


def forbidden(request: Request, who: SignedIn | None) -> HTMLResponse:
    return render(
        request,
        "error.html",
        who=who,
        status_code=403,
        title="Refused",
        message="This form was not sent from the console (its CSRF token is missing or "
        "wrong). Nothing was changed. Reload the page and try again.",
    )


def not_found(request: Request, who: SignedIn | None, message: str) -> HTMLResponse:
    return render(
        request, "error.html", who=who, status_code=404, title="Not found", message=message
    )


def not_done(request: Request, who: SignedIn | None, message: str) -> HTMLResponse:
    """A request the console refuses as sent (400): nothing was changed."""
    return render(
        request, "error.html", who=who, status_code=400, title="Not done", message=message
    )


def set_session_cookie(response: Response, request: Request, token: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=max_age,
        path=PATH,
        secure=secure(request),
        httponly=True,
        samesite="strict",
    )


def new_login_token() -> str:
    return secrets.token_urlsafe(32)


def sessions_of(ctx: ApiContext) -> sessionmaker[Session]:
    return ctx.sessions
