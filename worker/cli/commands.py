"""The CLI's commands: each parses its arguments, calls one service, prints the result."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select

from worker.cli.context import cli_context
from worker.db import migrate as migrations
from worker.db.models import CallbackEvent
from worker.report import render, status_report
from worker.scheduling import schedule as schedule_callbacks
from worker.settings import load_settings
from worker.validation import InvalidCallback, parse_new_callbacks
from worker.views import callback_view, rfc3339

CLI = "cli"
FLAG_FIELDS = (
    "organization_id",
    "to_number",
    "scheduled_at",
    "agent_id",
    "phone_number_id",
    "from_number",
    "reason",
    "instructions",
    "summary",
    "source_session_id",
)


def fail(message: str, code: int = 2) -> int:
    print(f"callbacks: error: {message}", file=sys.stderr)
    return code


def migrate(_: argparse.Namespace) -> int:
    settings = load_settings()
    migrations.upgrade(settings.effective_database_url)
    print("database schema is up to date")
    return 0


def _from_flags(args: argparse.Namespace) -> list[tuple[str, object]]:
    raw: dict[str, Any] = {f: getattr(args, f) for f in FLAG_FIELDS if getattr(args, f) is not None}
    for flag, field in (("--metadata", "metadata"), ("--pipeline-config", "pipeline_config")):
        text = getattr(args, field)
        if text is not None:
            try:
                raw[field] = json.loads(text)
            except ValueError as exc:
                raise InvalidCallback([f"{flag}: not valid JSON ({exc})"]) from None
    return [("", raw)]


def _from_file(path: str) -> list[tuple[str, object]]:
    items: list[tuple[str, object]] = []
    problems: list[str] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidCallback([f"cannot read {path}: {exc.strerror}"]) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            items.append((f"line {number}", json.loads(line)))
        except ValueError as exc:
            problems.append(f"line {number}: not valid JSON ({exc})")
    if problems:
        raise InvalidCallback(problems)
    return items


def schedule(args: argparse.Namespace) -> int:
    try:
        if args.file:
            if any(getattr(args, f) is not None for f in FLAG_FIELDS):
                return fail("give either --file or the callback's flags, not both")
            items = _from_file(args.file)
        else:
            items = _from_flags(args)
        new = parse_new_callbacks(items)
    except InvalidCallback as exc:
        return fail("nothing was scheduled:\n  " + "\n  ".join(exc.problems))
    with cli_context() as ctx, ctx.sessions.begin() as session:
        created = schedule_callbacks(
            session, new, now=ctx.clock.now(), actor=CLI, lateness=ctx.settings.lateness
        )
    for cb in created:
        print(json.dumps(callback_view(cb)))
    return 0


def history(args: argparse.Namespace) -> int:
    with cli_context() as ctx, ctx.sessions() as session:
        events = session.scalars(
            select(CallbackEvent)
            .where(CallbackEvent.callback_id == args.callback_id)
            .order_by(CallbackEvent.id)
        ).all()
    if not events:
        return fail(f"no callback {args.callback_id}", 1)
    for e in events:
        row = {
            "at": rfc3339(e.at),
            "from": e.from_status,
            "to": e.to_status,
            "actor": e.actor,
            "detail": e.detail,
        }
        if args.json:
            print(json.dumps(row))
        else:
            detail = " ".join(f"{k}={v}" for k, v in e.detail.items() if v is not None)
            move = f"{e.from_status or '-':>11} -> {e.to_status:<11}"
            print(f"{row['at']}  {move} {e.actor:<10} {detail}")
    return 0


def status(args: argparse.Namespace) -> int:
    with cli_context() as ctx, ctx.sessions() as session:
        report = status_report(session, ctx.clock.now())
    print(json.dumps(report) if args.json else render(report))
    return 0


def run(args: argparse.Namespace) -> int:
    from worker.cli.embedded import run_embedded

    return run_embedded(load_settings(), demo=args.demo)
