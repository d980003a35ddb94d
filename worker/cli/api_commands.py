"""``callbacks api`` (serve the admin API) and ``callbacks api-key create|revoke``."""

from __future__ import annotations

import argparse
import os
import sys

from worker import apikeys
from worker.cli.args import add_command, organization
from worker.cli.context import cli_context
from worker.cli.database import DatabaseNotReady
from worker.settings import load_settings

DEFAULT_PORT = 8000
MAX_DEFAULT_WORKERS = 8


def default_port() -> int:
    """``$PORT`` (what platforms like Heroku set), else 8000."""
    value = os.environ.get("PORT", "")
    return int(value) if value.isdigit() else DEFAULT_PORT


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    a = add_command(
        sub,
        "api",
        "serve the admin HTTP API (/v1/callbacks)",
        "Serve the platform's /v1/callbacks admin API (plus /healthz, /readyz, /metrics) "
        "for keys made with `callbacks api-key create`.",
    )
    a.add_argument(
        "--host",
        default=None,
        help="interface to listen on (default 0.0.0.0 in production, 127.0.0.1 when embedded)",
    )
    a.add_argument("--port", type=int, default=None, help="port (default $PORT, else 8000)")
    a.add_argument(
        "--workers",
        type=int,
        default=None,
        help="server processes (default $WEB_CONCURRENCY, else one per core up to "
        f"{MAX_DEFAULT_WORKERS}; 1 when embedded)",
    )

    k = add_command(
        sub,
        "api-key",
        "create or revoke admin API keys",
        "Admin API keys: each belongs to one organization and sees only its callbacks. "
        "Only a hash of the token is stored.",
    )
    ksub = k.add_subparsers(dest="api_key_command", required=True, metavar="ACTION")
    c = add_command(
        ksub,
        "create",
        "make a key for an organization; prints its token once",
        "Make a key for one organization. The token is printed once on standard output "
        "(TOKEN=$(callbacks api-key create --org ORG)); its id goes to standard error.",
    )
    owner = c.add_mutually_exclusive_group(required=True)
    owner.add_argument(
        "--org",
        dest="organization_id",
        type=organization,
        help="the organization the key belongs to",
    )
    owner.add_argument(
        "--operator",
        action="store_true",
        help="a key that sees every organization (the console, and /v1/callbacks with "
        "?organization_id=); give it to operators only",
    )
    r = add_command(
        ksub,
        "revoke",
        "end a key: requests with it get 401 from now on",
        "End a key: requests with it get 401 from now on.",
    )
    r.add_argument("key_id", help="the key's id (key_...), as printed by create")


def default_workers(embedded: bool) -> int:
    """``$WEB_CONCURRENCY`` (the convention of uvicorn's and gunicorn's CLIs), else one
    process per core this process may run on, capped so a big host does not open
    hundreds of database connections; one for the embedded SQLite default."""
    value = os.environ.get("WEB_CONCURRENCY", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    if embedded:
        return 1
    return max(1, min(usable_cores(), MAX_DEFAULT_WORKERS))


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def api(args: argparse.Namespace) -> int:
    from worker.api.serve import serve

    settings = load_settings()
    port = args.port if args.port is not None else default_port()
    # The bare command must serve in production (all interfaces, behind the platform's
    # router); the embedded laptop default stays on loopback.
    host = args.host or ("127.0.0.1" if settings.embedded else "0.0.0.0")  # noqa: S104
    workers = args.workers if args.workers is not None else default_workers(settings.embedded)
    serve(settings, host=host, port=port, workers=workers)
    return 0


def api_key(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        with cli_context(settings) as ctx, ctx.sessions.begin() as session:
            now = ctx.clock.now()
            if args.api_key_command == "create":
                key, token = apikeys.create_key(
                    session, args.organization_id, now=now, operator=args.operator
                )
            elif not apikeys.revoke_key(session, args.key_id, now=now):
                print(f"callbacks: error: no api key {args.key_id}", file=sys.stderr)
                return 1
    except DatabaseNotReady as exc:
        print(f"callbacks: error: {exc}", file=sys.stderr)
        return 2
    if args.api_key_command == "create":
        # The token alone on stdout, so `TOKEN=$(callbacks api-key create --org X)` works.
        print(token)
        owner = (
            "every organization (operator)"
            if key.operator
            else (f"organization {key.organization_id}")
        )
        print(
            f"api key {key.id} for {owner}: the token above is "
            f"shown only this once (revoke with `callbacks api-key revoke {key.id}`)",
            file=sys.stderr,
        )
    else:
        print(f"api key {args.key_id} revoked", file=sys.stderr)
    return 0
