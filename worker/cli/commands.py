"""The CLI's commands: each parses its arguments, calls one service, prints the result.

Results go to standard output (JSON where asked); messages and errors to standard error.
Bad input and a database that is not ready exit 2 with one line of why, no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from alembic.util import CommandError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from worker.cli.context import with_session
from worker.cli.database import DatabaseNotReady, unreachable
from worker.clock import SystemClock
from worker.creation import IdempotencyConflict
from worker.creation import schedule as schedule_callbacks
from worker.db import migrate as migrations
from worker.db.models import CallbackEvent
from worker.report import render, status_report
from worker.serializer import callback_view, rfc3339
from worker.settings import load_settings
from worker.validation import InvalidCallback, parse_new_callbacks

CLI = "cli"
# field name -> the flag that sets it, so errors name what the user typed
FLAGS = {
    "organization_id": "--org",
    "to_number": "--to",
    "scheduled_at": "--at",
    "agent_id": "--agent",
    "phone_number_id": "--phone-number",
    "from_number": "--from",
    "reason": "--reason",
    "instructions": "--instructions",
    "summary": "--summary",
    "source_session_id": "--source-session",
    "max_lateness_seconds": "--max-lateness",
    "idempotency_key": "--idempotency-key",
    "metadata": "--metadata",
    "pipeline_config": "--pipeline-config",
}
REQUIRED = ("organization_id", "to_number", "scheduled_at")
PROGRESS_EVERY = 5_000


def fail(message: str, code: int = 2) -> int:
    print(f"callbacks: error: {message}", file=sys.stderr)
    return code


def note(message: str) -> None:
    print(f"callbacks: {message}", file=sys.stderr)


def migrate(_: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        done = migrations.upgrade(settings.effective_database_url)
    except CommandError as exc:  # e.g. a database migrated by a newer version
        return fail(f"cannot migrate: {exc}")
    except (SQLAlchemyError, OSError) as exc:
        return fail(str(unreachable(settings.effective_database_url, exc)))
    print(done.describe())
    return 0


def _flag_problem(problem: str) -> str:
    """``organization_id: Field required`` → ``--org: required``."""
    field, sep, rest = problem.partition(":")
    flag = FLAGS.get(field.split(".")[0])
    if not sep or flag is None:
        return problem
    sub = field.partition(".")[2]
    rest = rest.strip()
    rest = "required" if rest == "Field required" else rest
    rest = rest.replace("max_lateness_seconds", "--max-lateness")
    return f"{flag}{' ' + sub if sub else ''}: {rest}"


def _from_flags(args: argparse.Namespace) -> list[tuple[str, object]]:
    missing = [FLAGS[f] for f in REQUIRED if getattr(args, f) is None]
    if missing:
        raise InvalidCallback([f"{', '.join(missing)}: required (or give --file)"])
    raw: dict[str, Any] = {
        f: getattr(args, f)
        for f in FLAGS
        if f not in ("metadata", "pipeline_config") and getattr(args, f) is not None
    }
    for field in ("metadata", "pipeline_config"):
        text = getattr(args, field)
        if text is not None:
            try:
                raw[field] = json.loads(text)
            except ValueError as exc:
                raise InvalidCallback([f"{FLAGS[field]}: not valid JSON ({exc})"]) from None
    return [("", raw)]


def _read_lines(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidCallback([f"cannot read {path}: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise InvalidCallback([f"{path} is not UTF-8 text ({exc.reason})"]) from None


def _from_file(path: str) -> list[tuple[str, object]]:
    items: list[tuple[str, object]] = []
    problems: list[str] = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            items.append((f"line {number}", json.loads(line)))
        except (ValueError, RecursionError) as exc:
            problems.append(f"line {number}: not valid JSON ({exc})")
    if problems:
        raise InvalidCallback(problems)
    return items


def schedule(args: argparse.Namespace) -> int:
    source = "standard input" if args.file == "-" else args.file
    try:
        if args.file:
            given = [FLAGS[f] for f in FLAGS if getattr(args, f) is not None]
            if given:
                return fail(f"give either --file or the callback's flags, not both ({given[0]})")
            items = _from_file(args.file)
            if not items:
                return fail(f"{source} has no callbacks (no non-blank line): nothing to do", 1)
            note(f"read {len(items)} callbacks from {source}; validating")
        else:
            items = _from_flags(args)
        new = parse_new_callbacks(items)
    except InvalidCallback as exc:
        problems = exc.problems if args.file else [_flag_problem(p) for p in exc.problems]
        return fail("nothing was scheduled:\n  " + "\n  ".join(problems))
    settings = load_settings()
    labels = [label for label, _ in items]
    if len(new) >= PROGRESS_EVERY:
        note(f"validated {len(new)} callbacks; writing them in one transaction")
    try:
        created = with_session(
            settings,
            lambda session: schedule_callbacks(
                session,
                new,
                now=SystemClock().now(),
                actor=CLI,
                lateness=settings.lateness,
                labels=labels,
            ),
            write=True,
        )
    except InvalidCallback as exc:
        problems = exc.problems if args.file else [_flag_problem(p) for p in exc.problems]
        return fail("nothing was scheduled:\n  " + "\n  ".join(problems))
    except IdempotencyConflict as exc:
        return fail(f"nothing was scheduled: {exc}")
    except IntegrityError:
        return fail(
            "nothing was scheduled: another request with the same idempotency key was "
            "being created at the same moment; run the command again",
            1,
        )
    except DatabaseNotReady as exc:
        return fail(str(exc))
    out = sys.stdout
    for cb in created:
        out.write(json.dumps(callback_view(cb)) + "\n")
    out.flush()
    if args.file:
        again = f", {created.replayed} already existed (same idempotency key)"
        note(
            f"scheduled {len(created) - created.replayed} callbacks from {source}"
            + (again if created.replayed else "")
        )
    elif created.replayed:
        note("already scheduled with this idempotency key: nothing new was created")
    return 0


def history(args: argparse.Namespace) -> int:
    settings = load_settings()

    def read(session: Session) -> list[CallbackEvent]:
        return list(
            session.scalars(
                select(CallbackEvent)
                .where(CallbackEvent.callback_id == args.callback_id)
                .order_by(CallbackEvent.id)
            ).all()
        )

    try:
        events = with_session(settings, read, write=False)
    except DatabaseNotReady as exc:
        return fail(str(exc))
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
    settings = load_settings()
    try:
        report = with_session(
            settings, lambda s: status_report(s, SystemClock().now()), write=False
        )
    except DatabaseNotReady as exc:
        return fail(str(exc))
    print(json.dumps(report) if args.json else render(report))
    return 0


def run(args: argparse.Namespace) -> int:
    from worker.cli.embedded import run_embedded

    return run_embedded(load_settings(), demo=args.demo)
