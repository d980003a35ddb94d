"""Debian's Chromium, driven by Playwright, for the console's browser tests and benchmark.

Never a browser of Playwright's own: ``executable_path`` is ``/usr/bin/chromium``
(installed by ``.ci/run``), started with the flags this machine needs (no sandbox as
root, no network of its own: background networking is refused here) and a fresh
profile each time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "console-screenshots"


def require_chromium() -> None:
    """Skip without Chromium on a developer's machine; fail under CI, which installs it."""
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing (apt-get install -y chromium chromium-driver)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser tests: {reason}")
    pytest.skip(reason)


@contextmanager
def chromium(profile: Path, *, javascript: bool = True) -> Iterator[BrowserContext]:
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            java_script_enabled=javascript,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()
