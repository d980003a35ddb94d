"""Delivery, for real: a receiver on 127.0.0.1 verifying Standard Webhooks signatures; the
retry schedule, Retry-After, 410, endpoint disabling, order per callback and fairness
between endpoints, run through the domain functions the Celery tasks call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook

from tests.support.factories import T0, make_callback
from tests.support.webhook_receiver import Answer as Reply
from tests.support.webhook_receiver import Receiver
from worker import lifecycle
from worker.db.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from worker.webhooks import delivery, jobs
from worker.webhooks.addresses import Allowed, RefusedURL
from worker.webhooks.delivery import MAX_ATTEMPTS, RETRY_DELAYS, Answer
from worker.webhooks.endpoints import create_endpoint, rotate_secret
from worker.webhooks.sender import send

LEASE = timedelta(minutes=2)
HTTP_OK = Allowed(http_hosts={"hooks.test"})
NOW = T0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def _verify(secret: str, body: bytes, headers: dict[str, str], at: datetime = NOW) -> Any:
    """What a receiver does, at the time the attempt was sent (its timestamp is checked)."""
    with freeze_time(at):
        return Webhook(secret).verify(body, headers)


def _endpoint(session: Session, url: str, org: str = "org_a") -> WebhookEndpoint:
    return create_endpoint(session, organization_id=org, url=url, now=T0 - timedelta(days=1))


def _deliver_due(sessions: sessionmaker[Session], *, now: datetime = NOW) -> list[str]:
    """One sweep and every attempt it hands out, as the tasks do; returns the statuses."""
    with sessions.begin() as session:
        ids = delivery.claim_due(session, now=now, lease=LEASE, per_endpoint=10)
    statuses = []
    for delivery_id in ids:
        with sessions.begin() as session:
            out = delivery.prepare(session, delivery_id, now=now)
        assert out is not None
        answer = send(out, at=now, timeout=5)
        with sessions.begin() as session:
            statuses.append(delivery.record_answer(session, out, answer, now=now))
    return statuses


def test_a_delivery_is_signed_and_received_once(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    with sessions.begin() as session:
        endpoint = _endpoint(session, receiver.url)
        secret = endpoint.secret
        callback_id = make_callback(session).id
    assert _deliver_due(sessions) == ["delivered"]
    assert _deliver_due(sessions) == []
    (hit,) = receiver.hits
    payload = _verify(secret, hit.body, hit.headers)
    with sessions() as session:
        event = session.scalars(select(WebhookEvent)).one()
        assert hit.headers["webhook-id"] == event.id
        assert payload == event.payload == json.loads(hit.body)
        assert payload["data"]["callback"]["id"] == callback_id
        (attempt,) = session.scalars(select(WebhookAttempt)).all()
        assert (attempt.attempt_number, attempt.trigger, attempt.response_status) == (
            1,
            "automatic",
            200,
        )


def test_retries_keep_one_webhook_id_and_follow_the_schedule(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    with sessions.begin() as session:
        _endpoint(session, receiver.url)
        make_callback(session)
    now = NOW
    for delay in RETRY_DELAYS:
        receiver.script.append(Reply(500))
        assert _deliver_due(sessions, now=now) == ["pending"]
        assert _deliver_due(sessions, now=now + delay - timedelta(seconds=1)) == []
        now += delay
    receiver.script.append(Reply(500))
    assert _deliver_due(sessions, now=now) == ["failed"]
    assert len(receiver.hits) == MAX_ATTEMPTS == 8
    assert len({h.headers["webhook-id"] for h in receiver.hits}) == 1


def test_retry_after_is_honoured_and_410_disables(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    with sessions.begin() as session:
        endpoint_id = _endpoint(session, receiver.url).id
        make_callback(session)
    receiver.script.append(Reply(503, {"Retry-After": "120"}))
    assert _deliver_due(sessions) == ["pending"]
    assert _deliver_due(sessions, now=NOW + timedelta(seconds=119)) == []
    receiver.script.append(Reply(410))
    assert _deliver_due(sessions, now=NOW + timedelta(seconds=120)) == ["failed"]
    with sessions() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        assert not endpoint.enabled
        assert "410" in (endpoint.disabled_reason or "")


def test_a_redirect_is_not_followed(sessions: sessionmaker[Session], receiver: Receiver) -> None:
    with sessions.begin() as session:
        _endpoint(session, receiver.url)
        make_callback(session)
    receiver.script.append(Reply(302, {"Location": "http://127.0.0.1:9/elsewhere"}))
    assert _deliver_due(sessions) == ["pending"]
    assert [h.path for h in receiver.hits] == ["/hooks"]


def test_an_endpoint_failing_for_five_days_is_disabled(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        endpoint = _endpoint(session, "http://127.0.0.1:9/dead")
        endpoint.failing_since = NOW - timedelta(days=5)
        make_callback(session)
    with sessions.begin() as session:
        (delivery_id,) = delivery.claim_due(session, now=NOW, lease=LEASE, per_endpoint=1)
        out = delivery.prepare(session, delivery_id, now=NOW)
        assert out is not None
        delivery.record_answer(session, out, Answer(500, {}, 3), now=NOW)
    with sessions() as session:
        row = session.get(WebhookEndpoint, endpoint.id)
        assert row is not None
        assert not row.enabled
        assert "failed since" in (row.disabled_reason or "")


def test_a_later_event_waits_for_an_earlier_one_still_retrying(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    with sessions.begin() as session:
        _endpoint(session, receiver.url)
        callback_id = make_callback(session).id
        lifecycle.cancel(
            session, callback_id, organization_id="org_a", now=NOW, actor="t", reason=None
        )
    receiver.script.append(Reply(500))
    assert _deliver_due(sessions) == ["pending"]  # only the first event was handed out
    assert _deliver_due(sessions, now=NOW + timedelta(seconds=5)) == ["delivered"]
    assert _deliver_due(sessions, now=NOW + timedelta(seconds=5)) == ["delivered"]
    types = [json.loads(h.body)["type"] for h in receiver.hits]
    assert types == ["callback.scheduled", "callback.scheduled", "callback.cancelled"]


class _At:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def test_a_slot_sends_its_endpoints_due_deliveries_in_one_transaction_each(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    with sessions.begin() as session:
        _endpoint(session, receiver.url)
        first_cb, second_cb = make_callback(session).id, make_callback(session).id
        lifecycle.cancel(
            session, first_cb, organization_id="org_a", now=NOW, actor="t", reason=None
        )
    with sessions.begin() as session:
        (handed,) = delivery.claim_due(session, now=NOW, lease=LEASE, per_endpoint=1)
    commits: list[object] = []

    def committed(conn: object) -> None:
        commits.append(conn)

    bind = sessions.kw["bind"]
    event.listen(bind, "commit", committed)
    try:
        made = jobs.deliver(sessions, _At(NOW), handed, timeout=5, lease=LEASE, per_endpoint=1)
    finally:
        event.remove(bind, "commit", committed)
    # The task handed one delivery sent all three, each recorded in the transaction that
    # claims and prepares the next: one transaction per attempt (and one to start).
    assert made == 3
    assert len(commits) == 4
    got = [(json.loads(h.body)["data"]["callback"]["id"], json.loads(h.body)["type"])
           for h in receiver.hits]  # fmt: skip
    assert sorted(got) == sorted(
        [
            (first_cb, "callback.scheduled"),
            (first_cb, "callback.cancelled"),
            (second_cb, "callback.scheduled"),
        ]
    )
    assert got.index((first_cb, "callback.scheduled")) < got.index((first_cb, "callback.cancelled"))
    with sessions() as session:
        statuses = session.scalars(select(WebhookDelivery.status)).all()
        assert statuses == ["delivered"] * 3
        assert session.scalars(select(WebhookDelivery.leased_until)).all() == [None] * 3


def test_a_dead_endpoint_takes_only_its_own_slots(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        dead = _endpoint(session, "http://127.0.0.1:9/dead").id
        alive = _endpoint(session, "http://127.0.0.1:9/alive").id
        for _ in range(6):
            make_callback(session)
    with sessions.begin() as session:
        ids = delivery.claim_due(session, now=NOW, lease=LEASE, per_endpoint=2)
        by_endpoint = [
            session.get(WebhookDelivery, i).endpoint_id  # type: ignore[union-attr]
            for i in ids
        ]
    assert sorted(by_endpoint) == sorted([dead, dead, alive, alive])
    with sessions.begin() as session:  # both still in flight: nothing more for either
        assert delivery.claim_due(session, now=NOW, lease=LEASE, per_endpoint=2) == []
    with sessions.begin() as session:  # the leases ran out (the worker died): handed out again
        again = delivery.claim_due(session, now=NOW + LEASE, lease=LEASE, per_endpoint=2)
    assert sorted(again) == sorted(ids)


def test_after_a_rotation_both_secrets_sign(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    with sessions.begin() as session:
        endpoint = _endpoint(session, receiver.url)
        old = endpoint.secret
        rotate_secret(session, endpoint, now=NOW)
        new = endpoint.secret
        make_callback(session)
    assert _deliver_due(sessions) == ["delivered"]
    (hit,) = receiver.hits
    assert len(hit.headers["webhook-signature"].split(" ")) == 2
    _verify(old, hit.body, hit.headers)
    _verify(new, hit.body, hit.headers)


def test_redeliver_sends_again_as_manual(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    with sessions.begin() as session:
        _endpoint(session, receiver.url)
        make_callback(session)
    assert _deliver_due(sessions) == ["delivered"]
    with sessions.begin() as session:
        (row,) = session.scalars(select(WebhookDelivery)).all()
        assert delivery.redeliver(session, row.id, organization_id="org_b", now=NOW) is None
        assert delivery.redeliver(session, row.id, organization_id="org_a", now=NOW)
    assert _deliver_due(sessions) == ["delivered"]
    assert len({h.headers["webhook-id"] for h in receiver.hits}) == 1
    with sessions() as session:
        triggers = session.scalars(select(WebhookAttempt.trigger).order_by(WebhookAttempt.id)).all()
        assert triggers == ["automatic", "manual"]


def test_a_dns_answer_that_turns_private_sends_nothing(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    """Checked at creation, and again at delivery on the address it resolves to then."""
    port = receiver.server.server_address[1]
    with sessions.begin() as session:
        create_endpoint(
            session,
            organization_id="org_a",
            url=f"http://hooks.test:{port}/hooks",
            allowed=HTTP_OK,
            resolver=lambda host, p: ["127.0.0.1"],
            now=NOW,
        )
        make_callback(session)
    with sessions.begin() as session:
        (delivery_id,) = delivery.claim_due(session, now=NOW, lease=LEASE, per_endpoint=1)
        out = delivery.prepare(session, delivery_id, now=NOW)
    assert out is not None
    answer = send(
        out, at=NOW, timeout=5, allowed=HTTP_OK, resolver=lambda h, p: ["169.254.169.254"]
    )
    assert answer.status is None
    assert "169.254.169.254" in (answer.error or "")
    assert receiver.hits == []
    # resolved to loopback: it connects to the address it checked, with the name as Host
    answer = send(out, at=NOW, timeout=5, allowed=HTTP_OK, resolver=lambda h, p: ["127.0.0.1"])
    assert answer.status == 200
    assert receiver.hits[0].headers["Host"] == f"hooks.test:{port}"


def test_creation_refuses_metadata_and_private_addresses(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        for url in ("https://169.254.169.254/hook", "https://10.0.0.1/hook"):
            with pytest.raises(RefusedURL):
                create_endpoint(session, organization_id="org_a", url=url, now=NOW)
