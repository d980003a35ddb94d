"""The signed-in pages: the table, one callback, actions on one, a selection or a filter."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from worker.actions import CallbackNotFound
from worker.api import reads
from worker.api.console import charts
from worker.api.console.filters import BadFilter, parse, when
from worker.api.console.web import (
    PATH,
    Form,
    csrf_valid,
    current,
    forbidden,
    not_done,
    not_found,
    redirect,
    render,
    to_login,
)
from worker.api.deps import ApiContext, Context
from worker.console import audit, bulk, detail, listing, overview
from worker.console.bulk import Action
from worker.console.listing import Filters

router = APIRouter(prefix=PATH, include_in_schema=False)


def wiring(ctx: ApiContext) -> bulk.Wiring:
    return bulk.Wiring(ctx.sessions, ctx.clock, ctx.publish, ctx.claim_lease, ctx.lateness)


@router.get("")
def home(request: Request, ctx: Context) -> Response:
    """The overview: counts, backlog, charts of the last hours, failures, holds."""
    who = current(ctx, request)
    if who is None:
        return to_login(request)
    with ctx.sessions() as session:
        seen = overview.overview(session, who.viewer, ctx.clock.now())
        session.expunge_all()
    minutes = seen.minutes
    return render(
        request,
        "overview.html",
        who=who,
        title="Overview",
        nav="overview",
        o=seen,
        now=ctx.clock.now(),
        dials_chart=(charts.bars("Dials started per minute", [(m.at, m.dials) for m in minutes])),
        placed_chart=(charts.bars("Calls placed per minute", [(m.at, m.placed) for m in minutes])),
        lag_chart=(
            charts.bars(
                "Dispatch lag of first attempts, average per minute, seconds",
                [(m.at, m.lag_avg) for m in minutes],
                " s",
            )
        ),
        busy=[m for m in minutes if m.dials or m.placed],
    )


@router.get("/callbacks")
def callbacks(request: Request, ctx: Context) -> Response:
    who = current(ctx, request)
    if who is None:
        return to_login(request)
    q = request.query_params
    error = None
    try:
        filters = parse(q)
    except BadFilter as exc:
        filters, error = Filters(), str(exc)
    cursor = q.get("cursor") or None
    unmask = q.get("unmask") == "1"
    page = listing.Page([], None)
    if error is None:
        try:
            with reads.read_connection(ctx.sessions) as conn:
                page = listing.page(conn, who.viewer, filters, cursor=cursor)
        except listing.BadCursor:
            error = "That page link is not valid any more: showing the first page."
            with reads.read_connection(ctx.sessions) as conn:
                page = listing.page(conn, who.viewer, filters)
    if unmask and page.rows:
        with ctx.sessions.begin() as session:
            audit.record(
                session,
                who.viewer,
                audit.UNMASK,
                {
                    "page": "callbacks",
                    "filters": filters.query(),
                    "shown": [r.id for r in page.rows],
                },
                now=ctx.clock.now(),
            )
    kept = filters.query()

    def url(**extra: str) -> str:
        return f"{PATH}/callbacks?" + urlencode(kept | extra)

    return render(
        request,
        "callbacks.html",
        who=who,
        title="Callbacks",
        nav="callbacks",
        filters=filters,
        kept=kept,
        raw={k: q.get(k, "") for k in kept}
        | {k: q.get(k, "") for k in ("scheduled_after", "scheduled_before", "to_number")},
        page=page,
        cursor=cursor,
        unmask=unmask,
        error=error,
        status_code=400 if error and not page.rows and cursor is None else 200,
        next_url=None
        if page.next_cursor is None
        else f"{PATH}/callbacks?"
        + urlencode(kept | {"cursor": page.next_cursor} | ({"unmask": "1"} if unmask else {})),
        first_url=f"{PATH}/callbacks?" + urlencode(kept | ({"unmask": "1"} if unmask else {})),
        unmask_url=f"{PATH}/callbacks?"
        + urlencode(kept | ({"cursor": cursor} if cursor else {}) | {"unmask": "1"}),
        mask_url=f"{PATH}/callbacks?" + urlencode(kept | ({"cursor": cursor} if cursor else {})),
    )


@router.get("/audit")
def audit_page(request: Request, ctx: Context) -> Response:
    """Who asked to see phone numbers, and who changed an organization's settings
    (operators only: the record spans every organization)."""
    who = current(ctx, request)
    if who is None:
        return to_login(request)
    if not who.viewer.operator:
        return not_found(request, who, "The audit is for operator keys.")
    with ctx.sessions() as session:
        rows = audit.recent(session, limit=200)
        session.expunge_all()
    return render(request, "audit.html", who=who, title="Console audit", nav="audit", rows=rows)


@router.get("/callbacks/{callback_id}")
def one(request: Request, ctx: Context, callback_id: str) -> Response:
    who = current(ctx, request)
    if who is None:
        return to_login(request)
    unmask = request.query_params.get("unmask") == "1"
    try:
        with ctx.sessions.begin() as session:
            found = detail.detail(session, who.viewer, callback_id)
            if unmask:
                audit.record(
                    session,
                    who.viewer,
                    audit.UNMASK,
                    {"page": "callback", "callback_id": callback_id},
                    now=ctx.clock.now(),
                )
                # Written before the page's objects are detached (a detached pending
                # row would never be inserted).
                session.flush()
            session.expunge_all()
    except CallbackNotFound:
        return not_found(request, who, f"No callback {callback_id} that this key may see.")
    return render(
        request,
        "callback.html",
        who=who,
        title=f"Callback {callback_id}",
        nav="callbacks",
        d=found,
        unmask=unmask,
        done=request.query_params.get("done"),
    )


def _action(form: FormData) -> Action | None:
    try:
        return Action(str(form.get("action", "")))
    except ValueError:
        return None


@router.post("/actions")
def act(request: Request, ctx: Context, form: Form) -> Response:
    """One callback (``scope=one``: at once), a selection or a filter (``scope=selection``
    or ``filter``: first a count to confirm, then the run)."""
    who = current(ctx, request)
    if who is None:
        return to_login(request)
    if not csrf_valid(request, who, form):
        return forbidden(request, who)
    action = _action(form)
    scope = str(form.get("scope", ""))
    if action is None or scope not in ("one", "selection", "filter"):
        return not_done(request, who, "Unknown action.")
    scheduled_at = None
    if action == Action.RESCHEDULE:
        raw = str(form.get("scheduled_at", "")).strip()
        try:
            if not raw:
                raise BadFilter("scheduled_at: give the new date and time")
            scheduled_at = when("scheduled_at", raw)
        except BadFilter as exc:
            return not_done(request, who, str(exc))
    reason = str(form.get("reason", "")).strip() or None
    ids = [str(i) for i in form.getlist("ids")]
    filters = Filters()
    if scope == "filter":
        try:
            filters = parse({k: str(v) for k, v in form.items()})
        except BadFilter as exc:
            return not_done(request, who, str(exc))
    elif not ids:
        return not_done(request, who, "Nothing selected: tick the callbacks to act on first.")
    w = wiring(ctx)
    with ctx.sessions.begin() as session:
        targets = bulk.selected(session, who.viewer, ids) if scope != "filter" else None
        by_status = (
            listing.count_by_status(session, who.viewer, filters)
            if targets is None
            else _count(targets)
        )
    preview = bulk.preview(action, by_status)
    confirmed = scope == "one" or form.get("confirm") == "yes"
    if not confirmed:
        return render(
            request,
            "confirm.html",
            who=who,
            title=f"Confirm: {action}",
            nav="callbacks",
            preview=preview,
            action=action,
            scope=scope,
            ids=ids,
            kept=filters.query(),
            scheduled_at=str(form.get("scheduled_at", "")),
            reason=reason or "",
        )
    if scope == "filter":

        def batches() -> object:
            with ctx.sessions() as session:
                yield from listing.matching(session, who.viewer, filters, batch=bulk.BATCH)

        source = batches
    else:
        assert targets is not None
        chunks = [targets[i : i + bulk.BATCH] for i in range(0, len(targets), bulk.BATCH)]
        source = lambda: iter(chunks)  # noqa: E731
    result = bulk.run(w, who.viewer, action, source, scheduled_at=scheduled_at, reason=reason)  # type: ignore[arg-type]
    if scope == "one" and ids:
        return redirect(f"{PATH}/callbacks/{ids[0]}?" + urlencode({"done": _summary(result)}))
    return render(
        request,
        "result.html",
        who=who,
        title=f"Done: {action}",
        nav="callbacks",
        result=result,
        kept=filters.query(),
        scope=scope,
    )


def _count(targets: list[bulk.Target]) -> dict[bulk.Status, int]:  # type: ignore[name-defined]
    from collections import Counter

    return dict(Counter(t[2] for t in targets))


def _summary(result: bulk.Result) -> str:
    if result.changed:
        return f"{result.action}: done"
    why = ", ".join(result.not_changed) or "nothing to do"
    return f"{result.action}: not done ({why})"
