"""The console in a real browser (Debian's Chromium via Playwright) against a real
``callbacks api`` process on PostgreSQL: sign in, filter, page, open a callback, cancel
it, bulk-dispatch a filtered set after confirming the count, reschedule; another
organization sees none of it; a form without its CSRF token changes nothing.
Screenshots of each page go to build/console-screenshots/ (the path is printed)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.browser import SCREENSHOTS, chromium, require_chromium
from tests.support.databases import REDIS_URL
from tests.support.factories import make_callback
from tests.support.processes import Processes, free_port, processes, service_env, wait_until
from worker.apikeys import create_key
from worker.db.models import Callback
from worker.status import Status

pytestmark = pytest.mark.e2e
BROKER = os.environ.get("TEST_API_REDIS_URL", REDIS_URL.rsplit("/", 1)[0] + "/12")
BULK_NUMBER = "+12015550142"


@dataclass(frozen=True)
class Console:
    url: str
    key_a: str
    key_b: str
    sessions: sessionmaker[Session]

    def status(self, callback_id: str) -> str:
        with self.sessions() as s:
            return str(s.scalar(select(Callback.status).where(Callback.id == callback_id)))


@pytest.fixture
def console(pg_url: str, pg_sessions: sessionmaker[Session], tmp_path: Path) -> Iterator[Console]:
    require_chromium()
    r = redis.Redis.from_url(BROKER)
    r.flushdb()
    r.close()
    later = datetime.now(UTC) + timedelta(days=2)
    with pg_sessions.begin() as s:
        _, key_a = create_key(s, "org_a", now=datetime.now(UTC))
        _, key_b = create_key(s, "org_b", now=datetime.now(UTC))
        for i in range(70):
            make_callback(s, org="org_a", to=f"+1201555{i:04d}", scheduled_at=later)
        for _ in range(4):
            make_callback(s, org="org_a", to=BULK_NUMBER, scheduled_at=later)
        make_callback(s, Status.DISPATCHED, org="org_a", to=BULK_NUMBER, scheduled_at=later)
        make_callback(
            s, Status.FAILED, org="org_a", failure_cause="provider refused the call: HTTP 404"
        )
        make_callback(s, org="org_b", to="+12015559999", scheduled_at=later)
    port = free_port()
    env = service_env(
        DATABASE_URL=pg_url, BROKER_URL=BROKER, DIALER="log", PORT=str(port), WEB_CONCURRENCY="1"
    )
    with processes(tmp_path, env) as procs:
        procs.start("api", "callbacks", "api", "--host", "127.0.0.1")
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _up(url, procs), timeout=30, what="callbacks api")
        yield Console(url, key_a, key_b, pg_sessions)


def _up(url: str, procs: Processes) -> bool:
    if procs.running["api"].poll() is not None:
        raise AssertionError("callbacks api exited:\n" + procs.log("api"))
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(f"{url}/console")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    # Keyboard only: the key field has the focus, Enter submits.
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Overview")


def test_an_operator_day_in_the_console(console: Console, tmp_path: Path) -> None:
    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        page.goto(f"{console.url}/console/login")
        shot(page, "01-sign-in")
        sign_in(page, console.url, console.key_a)
        expect(page.locator("#counts")).to_contain_text("scheduled")
        shot(page, "02-overview")

        # The table: 50 a page, masked numbers, a next page that keeps the filter.
        page.get_by_role("link", name="Callbacks").first.click()
        expect(page.locator("input[name=ids]")).to_have_count(50)
        assert "+12015550042" not in page.content()
        # With JavaScript on, one box selects the whole page.
        page.check("#select-all")
        expect(page.locator("input[name=ids]:checked")).to_have_count(50)
        page.uncheck("#select-all")
        page.select_option("#f-status", "scheduled")
        page.get_by_role("button", name="Filter").click()
        expect(page).to_have_url(re.compile(r"status=scheduled"))
        shot(page, "03-callbacks")
        page.get_by_role("link", name="Next page").click()
        expect(page).to_have_url(re.compile(r"status=scheduled.*cursor=|cursor=.*status=scheduled"))
        expect(page.locator("input[name=ids]")).to_have_count(24)

        # One callback: open it, cancel it.
        first = page.locator("tbody a.mono").first
        callback_id = first.inner_text()
        first.click()
        expect(page.locator("#status")).to_have_text("scheduled")
        expect(page.locator("#history")).to_contain_text("(new)")
        shot(page, "04-callback")
        page.fill("#reason", "the caller asked us not to")
        page.get_by_role("button", name="Cancel this callback").click()
        expect(page.locator("#status")).to_have_text("cancelled")
        expect(page.locator("#history")).to_contain_text("api:")
        assert console.status(callback_id) == "cancelled"

        # Reschedule another one from its page.
        page.goto(f"{console.url}/console/callbacks?status=scheduled")
        page.locator("tbody a.mono").nth(3).click()
        other = page.url.rsplit("/", 1)[-1]
        new_at = (datetime.now(UTC) + timedelta(days=5)).replace(second=0, microsecond=0)
        page.fill("#new-at", new_at.strftime("%Y-%m-%dT%H:%M"))
        page.get_by_role("button", name="Reschedule").click()
        expect(page.locator("[role=status]")).to_contain_text("done")
        with console.sessions() as s:
            assert s.scalar(select(Callback.scheduled_at).where(Callback.id == other)) == new_at

        # Bulk: everything one number matches; the count first, then the run.
        page.goto(f"{console.url}/console/callbacks")
        page.fill("#f-number", BULK_NUMBER)
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("input[name=ids]")).to_have_count(5)
        page.select_option("#all-action", "dispatch")
        page.get_by_role("button", name="Count what it would touch…").click()
        expect(page.locator("#will")).to_contain_text("4 will be dispatched now")
        expect(page.locator("#cannot")).to_contain_text("1: it is dispatched")
        shot(page, "05-bulk-confirm")
        page.get_by_role("button", name="Yes, dispatch 4").click()
        expect(page.locator("#changed")).to_have_text("4 changed")
        shot(page, "06-bulk-result")
        with console.sessions() as s:
            statuses = s.scalars(
                select(Callback.status).where(Callback.to_number == BULK_NUMBER)
            ).all()
        assert sorted(statuses) == ["dispatched", *["dispatching"] * 4]

        # A form without its CSRF token changes nothing (the browser's own cookie is sent).
        page.goto(f"{console.url}/console/callbacks?status=scheduled")
        target = page.locator("tbody a.mono").first.inner_text()
        forged = page.request.post(
            f"{console.url}/console/actions",
            form={"scope": "one", "ids": target, "action": "cancel"},
            max_redirects=0,
        )
        assert forged.status == 403
        assert console.status(target) == "scheduled"

        page.goto(f"{console.url}/console/orgs")
        shot(page, "07-org-settings")
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(r"/console/login$"))


def test_another_organization_sees_none_of_it(console: Console, tmp_path: Path) -> None:
    with chromium(tmp_path / "profile-b", javascript=False) as browser:
        page = browser.new_page()
        sign_in(page, console.url, console.key_b)
        page.goto(f"{console.url}/console/callbacks")
        expect(page.locator("input[name=ids]")).to_have_count(1)
        expect(page.locator("#select-all")).to_have_count(0)  # JavaScript off: no script ran
        page.goto(f"{console.url}/console/callbacks?organization_id=org_a")
        expect(page.locator("input[name=ids]")).to_have_count(0)
        with console.sessions() as s:
            a_id = s.scalar(select(Callback.id).where(Callback.organization_id == "org_a"))
        response = page.goto(f"{console.url}/console/callbacks/{a_id}")
        assert response is not None
        assert response.status == 404
