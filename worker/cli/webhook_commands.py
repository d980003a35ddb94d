"""``callbacks webhook add|list|remove``: an organization's callback webhook endpoints."""

from __future__ import annotations

import argparse
import json
from typing import Any

from worker.cli.args import add_command, organization
from worker.cli.commands import fail
from worker.cli.context import cli_context
from worker.cli.database import DatabaseNotReady
from worker.db.models import WebhookEndpoint
from worker.settings import load_settings
from worker.webhooks.addresses import RefusedURL
from worker.webhooks.endpoints import (
    InvalidEndpoint,
    create_endpoint,
    endpoint_view,
    list_endpoints,
)


def add_parsers(sub: Any) -> None:
    w = add_command(
        sub,
        "webhook",
        "an organization's callback webhook endpoints",
        "Where an organization's callback.* events are POSTed (Standard Webhooks signed).",
    )
    wsub = w.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = add_command(
        wsub,
        "add",
        "add an endpoint (prints it as JSON, with its secret: shown only now)",
        "Add an endpoint; prints it as JSON with its signing secret (whsec_...), which is "
        "shown only this once.",
    )
    add.add_argument("--org", required=True, type=organization, help="the organization")
    add.add_argument("--url", required=True, help="https:// URL (http only for loopback)")
    add.add_argument(
        "--events", default="", help="comma-separated event types (default: all of them)"
    )
    add.add_argument("--description", help="a note for people")
    ls = add_command(wsub, "list", "list endpoints", "List the organization's endpoints as JSON.")
    ls.add_argument("--org", required=True, type=organization, help="the organization")
    rm = add_command(wsub, "remove", "remove an endpoint", "Remove an endpoint and its log.")
    rm.add_argument("endpoint_id", help="the endpoint's id (whe_...)")


def webhook(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        with cli_context(settings) as ctx, ctx.sessions.begin() as session:
            if args.action == "add":
                events = [e.strip() for e in args.events.split(",") if e.strip()]
                try:
                    endpoint = create_endpoint(
                        session,
                        organization_id=args.org,
                        url=args.url,
                        events=events,
                        description=args.description,
                        now=ctx.clock.now(),
                        allowed=settings.webhook_allowed,
                    )
                except (RefusedURL, InvalidEndpoint) as exc:
                    return fail(str(exc))
                print(json.dumps(endpoint_view(endpoint, with_secret=True), indent=2))
            elif args.action == "list":
                views = [endpoint_view(e) for e in list_endpoints(session, args.org)]
                print(json.dumps(views, indent=2))
            else:
                found = session.get(WebhookEndpoint, args.endpoint_id)
                if found is None:
                    return fail(f"no webhook endpoint {args.endpoint_id}", 1)
                session.delete(found)
                print(f"webhook endpoint {args.endpoint_id} removed")
    except DatabaseNotReady as exc:
        return fail(str(exc))
    return 0
