"""``callbacks org-redial set|show``: an organization's redial policy (worker/redials.py)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from worker.cli.args import org_set_show
from worker.cli.commands import fail
from worker.cli.context import cli_context
from worker.cli.database import DatabaseNotReady
from worker.db.models import OrgConfig
from worker.pacing.orgs import upsert
from worker.redials import REDIALABLE, parse_intervals, parse_on, policy_of
from worker.settings import load_settings


def add_parsers(sub: Any) -> None:
    s = org_set_show(
        sub,
        "org-redial",
        (
            "an organization's redials of unanswered calls",
            "Redial a callback whose call was not answered, as a new callback, up to --max "
            "times per callback (default REDIAL_MAX, 0: off), for the outcomes in --on "
            "(default REDIAL_ON), after the waits in --intervals (default REDIAL_INTERVALS; "
            "the last repeats). An answered call, or cancelling the pending redial, ends it.",
        ),
        (
            "set the policy (a flag left out keeps its value)",
            "Set the organization's redial policy; prints the effective policy as JSON.",
        ),
        ("the effective policy", "Print the organization's redial policy as JSON."),
    )
    s.add_argument("--max", type=int, metavar="N", help="redials per callback (0: off)")
    s.add_argument("--on", metavar="OUTCOMES", help=f"among {','.join(REDIALABLE)}")
    s.add_argument("--intervals", metavar="WAITS", help="e.g. 30m,2h (units s, m, h)")


def org_redial(args: argparse.Namespace) -> int:
    settings = load_settings()
    change: dict[str, Any] = {}
    if args.action == "set":
        try:
            if args.max is not None:
                if not 0 <= args.max <= 10:
                    raise ValueError("--max must be between 0 (off) and 10")
                change["redial_max"] = args.max
            if args.on is not None:
                change["redial_on"] = ",".join(sorted(parse_on(args.on)))
            if args.intervals is not None:
                parse_intervals(args.intervals)
                change["redial_intervals"] = args.intervals.replace(" ", "")
        except ValueError as exc:
            return fail(str(exc))
        if not change:
            return fail("give --max, --on or --intervals")
    try:
        with cli_context(settings) as ctx, ctx.sessions.begin() as session:
            if change:
                upsert(session, args.org, now=ctx.clock.now(), **change)
            config = session.get(OrgConfig, args.org)
            policy = policy_of(config, settings.redial_defaults)
    except DatabaseNotReady as exc:
        return fail(str(exc))
    print(json.dumps({"organization_id": args.org, **policy.view()}))
    return 0
