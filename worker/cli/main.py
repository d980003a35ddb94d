"""``callbacks``: migrate, schedule, run (embedded default), history."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from worker.cli import api_commands, commands, org_commands


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="callbacks",
        description="Scheduled-callback worker: claims due callbacks and places them once.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("migrate", help="create or upgrade the database schema (idempotent)")

    s = sub.add_parser("schedule", help="create callbacks (one from flags, or many with --file)")
    s.add_argument("--file", help="JSON-lines file, one callback object per line; all or nothing")
    s.add_argument("--org", dest="organization_id")
    s.add_argument("--to", dest="to_number", help="E.164 number to call")
    s.add_argument(
        "--at", dest="scheduled_at", help="ISO 8601 with a UTC offset, e.g. 2026-01-01T09:00:00Z"
    )
    s.add_argument("--agent", dest="agent_id")
    s.add_argument("--phone-number", dest="phone_number_id")
    s.add_argument("--from", dest="from_number")
    s.add_argument("--reason")
    s.add_argument("--instructions")
    s.add_argument("--summary")
    s.add_argument("--source-session", dest="source_session_id")
    s.add_argument("--metadata", help="JSON object")
    s.add_argument("--pipeline-config", help="JSON object")

    r = sub.add_parser("run", help="everything in one process tree (embedded default)")
    r.add_argument(
        "--demo",
        action="store_true",
        help="schedule demo callbacks seconds ahead, exit when placed",
    )

    st = sub.add_parser("status", help="counts by status, due backlog, recent failures, hold")
    st.add_argument("--json", action="store_true")

    h = sub.add_parser("history", help="every transition of one callback")
    h.add_argument("callback_id")
    h.add_argument("--json", action="store_true")

    api_commands.add_parsers(sub)
    org_commands.add_parsers(sub)
    return p


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "migrate": commands.migrate,
    "schedule": commands.schedule,
    "run": commands.run,
    "history": commands.history,
    "status": commands.status,
    "api": api_commands.api,
    "api-key": api_commands.api_key,
    "org-window": org_commands.org_window,
    "org-pacing": org_commands.org_pacing,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return HANDLERS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
