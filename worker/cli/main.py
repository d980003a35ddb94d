"""``callbacks``: migrate, schedule, run (embedded default), status, history, api, keys."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from worker.cli import api_commands, commands, org_commands, redial_commands, webhook_commands
from worker.cli.args import add_command, organization


def _schedule_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = add_command(
        sub,
        "schedule",
        "create callbacks: one from flags, or many from a JSON-lines file",
        "Create one callback from the flags (--org, --to and --at are required), or many "
        "with --file (all or nothing). Prints each created callback as JSON, in the admin "
        "API's shape, one per line on standard output; messages go to standard error. A "
        "callback already more than its lateness (CALLBACK_MAX_LATENESS, default 4 h, or "
        "max_lateness_seconds) in the past is refused.",
    )
    s.add_argument(
        "--file",
        metavar="PATH",
        help="JSON-lines file (`-`: standard input), one callback object per line with the "
        "API's field names (organization_id, to_number, scheduled_at, ...); all or nothing",
    )
    req = s.add_argument_group("required (unless --file)")
    req.add_argument(
        "--org",
        dest="organization_id",
        type=organization,
        metavar="ORG",
        help="organization id (required)",
    )
    req.add_argument(
        "--to",
        dest="to_number",
        metavar="E164",
        help="number to call, E.164, e.g. +12015551234 (required)",
    )
    req.add_argument(
        "--at",
        dest="scheduled_at",
        metavar="ISO8601",
        help="when, with a UTC offset, e.g. 2026-01-01T09:00:00Z (required)",
    )
    opt = s.add_argument_group("optional")
    opt.add_argument(
        "--agent", dest="agent_id", metavar="ID", help="the AI agent that makes the call"
    )
    opt.add_argument(
        "--phone-number", dest="phone_number_id", metavar="ID", help="id of the number to call from"
    )
    opt.add_argument("--from", dest="from_number", metavar="E164", help="E.164 caller number")
    opt.add_argument(
        "--reason", metavar="TEXT", help="why the callback is due (up to 4000 characters)"
    )
    opt.add_argument("--instructions", metavar="TEXT", help="what the agent should do on the call")
    opt.add_argument("--summary", metavar="TEXT", help="summary of the call that asked for it")
    opt.add_argument(
        "--source-session", dest="source_session_id", metavar="ID", help="session id of that call"
    )
    opt.add_argument(
        "--metadata",
        metavar="JSON",
        help='JSON object passed to the agent; "timezone" (IANA) decides the calling window',
    )
    opt.add_argument(
        "--pipeline-config",
        metavar="JSON",
        help="JSON object of VoiceDialRequest fields (voice, llm, firstMessage, ...)",
    )
    opt.add_argument(
        "--max-lateness",
        dest="max_lateness_seconds",
        type=int,
        metavar="SECONDS",
        help="how late it may still be placed (default CALLBACK_MAX_LATENESS); later it fails "
        "as expired",
    )
    opt.add_argument(
        "--idempotency-key",
        dest="idempotency_key",
        metavar="KEY",
        help="the same key and callback again returns the first one instead of a second "
        "callback; the same key with a different callback is refused (per organization)",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="callbacks",
        description="Scheduled-callback worker: claims due callbacks and places them once.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_command(
        sub,
        "migrate",
        "create or upgrade the database schema (idempotent)",
        "Create the schema in a new database or upgrade an existing one to this version, "
        "and say which it did. Safe to run on every deploy, before the other processes.",
    )
    _schedule_parser(sub)

    r = add_command(
        sub,
        "run",
        "everything on one machine: worker, beat and the admin API (embedded default)",
        "Run the whole product on this machine: migrates the database, then runs a Celery "
        "worker with an embedded beat and also serves the admin API (`callbacks api`, "
        "http://127.0.0.1:$PORT, default 8000). With no settings it uses a SQLite file and "
        "a file-backed broker in DATA_DIR and the log-only dialer (no call is placed). "
        "Runs until Ctrl-C.",
    )
    r.add_argument(
        "--demo",
        action="store_true",
        help="schedule demo callbacks seconds ahead, exit when placed",
    )

    st = add_command(
        sub,
        "status",
        "counts by status, due backlog, recent failures, hold",
        "What an operator asks first: callbacks in each status, how many are due and how "
        "long the oldest has waited, failures of the last hour by cause, and whether "
        "dialing is held (e.g. after the provider rejected our key).",
    )
    st.add_argument("--json", action="store_true", help="one JSON object instead of text")

    h = add_command(
        sub,
        "history",
        "every transition of one callback",
        "Every transition of one callback: when, from, to, who (poller, worker, reaper, "
        "manual, api:<key>, cli, pipeline) and why.",
    )
    h.add_argument("callback_id", help="the callback's id (cb_...)")
    h.add_argument("--json", action="store_true", help="one JSON object per transition")

    api_commands.add_parsers(sub)
    org_commands.add_parsers(sub)
    redial_commands.add_parsers(sub)
    webhook_commands.add_parsers(sub)
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
    "org-redial": redial_commands.org_redial,
    "webhook": webhook_commands.webhook,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return HANDLERS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
