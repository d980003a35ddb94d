"""``callbacks org-window`` and ``callbacks org-pacing``: per-organization calling window
and pacing caps (worker/pacing/orgs.py)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from worker.cli.args import org_set_show
from worker.cli.commands import fail
from worker.cli.context import cli_context
from worker.cli.database import DatabaseNotReady
from worker.db.models import OrgConfig
from worker.pacing.orgs import describe, set_window, upsert
from worker.pacing.windows import Window, valid_zone_name
from worker.settings import load_settings


def add_parsers(sub: Any) -> None:
    shown = (
        "the effective window and pacing",
        "Print the organization's effective calling window and pacing caps as JSON.",
    )
    s = org_set_show(
        sub,
        "org-window",
        (
            "an organization's calling window (callee's local time)",
            "When an organization's callbacks may ring, in the callee's local time (default "
            "CALLING_WINDOW_START-CALLING_WINDOW_END, every day). Outside it a callback waits "
            "for the next opening; it is never failed for it.",
        ),
        (
            "set the window (unset fields fall back to the defaults)",
            "Set the organization's calling window; prints the effective window and pacing.",
        ),
        shown,
    )
    s.add_argument("--start", required=True, help="HH:MM local, e.g. 08:00 (required)")
    s.add_argument(
        "--end", required=True, help="HH:MM local, e.g. 21:00 (24:00: midnight) (required)"
    )
    s.add_argument("--days", default="daily", help="e.g. mon-fri, sat,sun, daily")
    s.add_argument("--timezone", help="IANA zone for callees without metadata.timezone")
    s.add_argument(
        "--allow-overnight",
        action="store_true",
        help="accept an end before the start (a window across midnight)",
    )

    ps = org_set_show(
        sub,
        "org-pacing",
        (
            "an organization's concurrency and rate caps",
            "Caps on how many of an organization's callbacks are in progress at once, per "
            "phone number, and per minute (0: unlimited). What exceeds a cap waits its turn.",
        ),
        (
            "set caps (0: unlimited; omitted: unchanged)",
            "Set the organization's caps (0: unlimited; a flag left out keeps its value); "
            "prints the effective window and pacing.",
        ),
        shown,
    )
    ps.add_argument("--max-concurrent", type=int, metavar="N", help="callbacks in progress at once")
    ps.add_argument(
        "--max-per-number",
        type=int,
        metavar="N",
        help="callbacks in progress at once per phone_number_id",
    )
    ps.add_argument(
        "--max-dials-per-minute", type=int, metavar="N", help="dials started per minute"
    )


def _run(org: str, change: dict[str, Any] | None, window: Window | None, tz: str | None) -> int:
    settings = load_settings()
    try:
        with cli_context(settings) as ctx, ctx.sessions.begin() as session:
            now = ctx.clock.now()
            if window is not None:
                set_window(session, org, window, tz, now=now)
            if change:
                upsert(session, org, now=now, **change)
            config = session.get(OrgConfig, org)
            view = describe(config, org, settings.pacing)
    except DatabaseNotReady as exc:
        return fail(str(exc))
    print(json.dumps(view))
    return 0


def org_window(args: argparse.Namespace) -> int:
    if args.action == "show":
        return _run(args.org, None, None, None)
    try:
        window = Window.parse(args.start, args.end, args.days)
        tz = valid_zone_name(args.timezone) if args.timezone else None
    except ValueError as exc:
        return fail(str(exc))
    if window.crosses_midnight and not args.allow_overnight:
        return fail(
            f"{args.start}-{args.end} crosses midnight; pass --allow-overnight if you mean it "
            "(US rules forbid calls before 08:00 and after 21:00 at the callee's location)"
        )
    return _run(args.org, None, window, tz)


def org_pacing(args: argparse.Namespace) -> int:
    if args.action == "show":
        return _run(args.org, None, None, None)
    change = {
        column: value
        for column, value in (
            ("max_concurrent", args.max_concurrent),
            ("max_concurrent_per_number", args.max_per_number),
            ("max_dials_per_minute", args.max_dials_per_minute),
        )
        if value is not None
    }
    if any(v < 0 for v in change.values()):
        return fail("caps must be 0 (unlimited) or more")
    if not change:
        return fail("give --max-concurrent, --max-per-number or --max-dials-per-minute")
    return _run(args.org, change, None, None)
