"""``callbacks api`` (serve the admin API) and ``callbacks api-key create|revoke``."""

from __future__ import annotations

import argparse
import copy
import os
import sys
from typing import Any

from sqlalchemy.exc import OperationalError, ProgrammingError

from worker import apikeys
from worker.clock import SystemClock
from worker.db.engine import make_engine, make_sessions
from worker.settings import load_settings

DEFAULT_PORT = 8000
MAX_DEFAULT_WORKERS = 8


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
    a.add_argument(
        "--workers",
        type=int,
        default=None,
        help="server processes (default $WEB_CONCURRENCY, else one per core up to "
        f"{MAX_DEFAULT_WORKERS}; 1 when embedded)",
    )

    k = sub.add_parser("api-key", help="create or revoke admin API keys")
    ksub = k.add_subparsers(dest="api_key_command", required=True, metavar="ACTION")
    c = ksub.add_parser("create", help="make a key for an organization; prints its token once")
    c.add_argument("--org", dest="organization_id", required=True)
    r = ksub.add_parser("revoke", help="end a key: requests with it get 401 from now on")
    r.add_argument("key_id")


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


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's own logging plus ours on the root logger, applied in every server process
    (worker processes are spawned: a ``basicConfig`` here would not reach them)."""
    import uvicorn.config

    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["plain"] = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    config["handlers"]["plain"] = {
        "class": "logging.StreamHandler",
        "formatter": "plain",
        "stream": "ext://sys.stderr",
    }
    config["root"] = {"handlers": ["plain"], "level": level.upper()}
    return config


def api(args: argparse.Namespace) -> int:
    import uvicorn

    from worker.api.app import create_app

    settings = load_settings()
    port = args.port if args.port is not None else default_port()
    # The bare command must serve in production (all interfaces, behind the platform's
    # router); the embedded laptop default stays on loopback.
    host = args.host or ("127.0.0.1" if settings.embedded else "0.0.0.0")  # noqa: S104
    workers = args.workers if args.workers is not None else default_workers(settings.embedded)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": settings.log_level.lower(),
        "log_config": log_config(settings.log_level),
    }
    if workers > 1:
        # Python runs one request's work at a time per process: one process per core
        # (measured: tests/perf/bench_api.py --load, README "Performance"). Each process
        # imports the app and builds it from the same environment.
        uvicorn.run("worker.api.asgi:app", workers=workers, **options)
    else:
        uvicorn.run(create_app(settings), **options)
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
