"""``callbacks api`` (serve the admin API) and ``callbacks api-key create|revoke``."""

from __future__ import annotations

import argparse
import os
import sys

from sqlalchemy.exc import OperationalError, ProgrammingError

from worker import apikeys
from worker.clock import SystemClock
from worker.db.engine import make_engine, make_sessions
from worker.settings import load_settings

DEFAULT_PORT = 8000


def default_port() -> int:
    """``$PORT`` (what platforms like Heroku set), else 8000."""
    value = os.environ.get("PORT", "")
    return int(value) if value.isdigit() else DEFAULT_PORT


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    a = sub.add_parser("api", help="serve the admin HTTP API (/v1/callbacks)")
    a.add_argument(
        "--host",
        default=None,
        help="interface to listen on (default 0.0.0.0 in production, 127.0.0.1 when embedded)",
    )
    a.add_argument("--port", type=int, default=None, help="port (default $PORT, else 8000)")

    k = sub.add_parser("api-key", help="create or revoke admin API keys")
    ksub = k.add_subparsers(dest="api_key_command", required=True, metavar="ACTION")
    c = ksub.add_parser("create", help="make a key for an organization; prints its token once")
    c.add_argument("--org", dest="organization_id", required=True)
    r = ksub.add_parser("revoke", help="end a key: requests with it get 401 from now on")
    r.add_argument("key_id")


def api(args: argparse.Namespace) -> int:
    from worker.api.serve import serve

    settings = load_settings()
    port = args.port if args.port is not None else default_port()
    # The bare command must serve in production (all interfaces, behind the platform's
    # router); the embedded laptop default stays on loopback.
    host = args.host or ("127.0.0.1" if settings.embedded else "0.0.0.0")  # noqa: S104
    serve(settings, host=host, port=port)
    return 0


def api_key(args: argparse.Namespace) -> int:
    settings = load_settings()
    engine = make_engine(settings.effective_database_url)
    try:
        with make_sessions(engine).begin() as session:
            now = SystemClock().now()
            if args.api_key_command == "create":
                key, token = apikeys.create_key(session, args.organization_id, now=now)
            elif not apikeys.revoke_key(session, args.key_id, now=now):
                print(f"callbacks: error: no api key {args.key_id}", file=sys.stderr)
                return 1
    except (OperationalError, ProgrammingError) as exc:
        print(
            f"callbacks: error: database not ready ({type(exc.orig).__name__}); "
            "is it reachable, and has `callbacks migrate` run?",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()
    if args.api_key_command == "create":
        # The token alone on stdout, so `TOKEN=$(callbacks api-key create --org X)` works.
        print(token)
        print(
            f"api key {key.id} for organization {key.organization_id}: the token above is "
            f"shown only this once (revoke with `callbacks api-key revoke {key.id}`)",
            file=sys.stderr,
        )
    else:
        print(f"api key {args.key_id} revoked", file=sys.stderr)
    return 0
