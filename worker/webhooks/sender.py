"""Sending one webhook attempt: Standard Webhooks headers and signature (the
``standardwebhooks`` package), a timeout, no redirects followed, and a connection to the
very address :func:`worker.webhooks.addresses.check_url` checked just before (the TLS
name and ``Host`` stay the URL's host)."""

from __future__ import annotations

import time
from datetime import datetime

import urllib3
from standardwebhooks.webhooks import Webhook
from urllib3.exceptions import HTTPError

from worker.webhooks.addresses import (
    NOTHING_ALLOWED,
    Allowed,
    RefusedURL,
    Resolver,
    check_url,
    resolve,
)
from worker.webhooks.delivery import Answer, Outgoing

USER_AGENT = "callbacks-worker-webhooks/1"


def sign(out: Outgoing, at: datetime) -> str:
    """The ``webhook-signature`` header: one ``v1,...`` per secret, space-separated (both
    during a rotation's grace period)."""
    body = out.body.decode()
    return " ".join(Webhook(secret).sign(out.message_id, at, body) for secret in out.secrets)


def send(
    out: Outgoing,
    *,
    at: datetime,
    timeout: float,
    allowed: Allowed = NOTHING_ALLOWED,
    resolver: Resolver = resolve,
) -> Answer:
    started = time.monotonic()

    def took() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        target = check_url(out.url, allowed=allowed, resolver=resolver)
    except RefusedURL as exc:
        return Answer(None, {}, took(), f"refused: {exc}")
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": out.message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": sign(out, at),
    }
    pool: urllib3.HTTPConnectionPool
    limits = urllib3.Timeout(connect=min(timeout, 10.0), read=timeout)
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            timeout=limits,
            retries=False,
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    else:
        pool = urllib3.HTTPConnectionPool(
            target.address, target.port, timeout=limits, retries=False
        )
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=out.body,
            headers=headers,
            redirect=False,
            retries=False,
            assert_same_host=False,
            preload_content=False,
        )
        # Only the status and headers matter; a receiver's long body is not read.
        response.release_conn()
        return Answer(response.status, dict(response.headers), took())
    except HTTPError as exc:
        return Answer(None, {}, took(), f"{type(exc).__name__}: {exc}"[:500])
    finally:
        pool.close()
