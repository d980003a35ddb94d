"""``callbacks org-window`` and ``callbacks org-pacing``: per-organization calling window
and pacing caps (worker/orgs.py)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from worker.cli.commands import fail
from worker.cli.context import cli_context
from worker.db.models import OrgConfig
from worker.orgs import describe, set_window, upsert
from worker.runtime import pacing_from_settings
from worker.windows import Window, valid_zone_name


def add_parsers(sub: Any) -> None:
    w = sub.add_parser("org-window", help="an organization's calling window (callee's local time)")
    wsub = w.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = wsub.add_parser("set", help="set the window (unset fields fall back to the defaults)")
    s.add_argument("--org", required=True)
    s.add_argument("--start", required=True, help="HH:MM local, e.g. 08:00")
    s.add_argument("--end", required=True, help="HH:MM local, e.g. 21:00 (24:00: midnight)")
    s.add_argument("--days", default="daily", help="e.g. mon-fri, sat,sun, daily")
    s.add_argument("--timezone", help="IANA zone for callees without metadata.timezone")
    s.add_argument(
        "--allow-overnight",
        action="store_true",
        help="accept an end before the start (a window across midnight)",
    )
    for name in ("show",):
        show = wsub.add_parser(name, help="the effective window and pacing")
        show.add_argument("--org", required=True)

    p = sub.add_parser("org-pacing", help="an organization's concurrency and rate caps")
    psub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ps = psub.add_parser("set", help="set caps (0: unlimited; omitted: unchanged)")
    ps.add_argument("--org", required=True)
    ps.add_argument("--max-concurrent", type=int)
    ps.add_argument("--max-per-number", type=int)
    ps.add_argument("--max-dials-per-minute", type=int)
    show = psub.add_parser("show", help="the effective window and pacing")
    show.add_argument("--org", required=True)


def _run(org: str, change: dict[str, Any] | None, window: Window | None, tz: str | None) -> int:
    with cli_context() as ctx, ctx.sessions.begin() as session:
        now = ctx.clock.now()
        if window is not None:
            set_window(session, org, window, tz, now=now)
        if change:
            upsert(session, org, now=now, **change)
        config = session.get(OrgConfig, org)
        view = describe(config, org, pacing_from_settings(ctx.settings))
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
