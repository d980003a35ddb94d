"""Issue 11, item 15: the README is followed with nothing else known, so what it points
to exists and what its steps run is installed by the steps."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_file_the_readme_names_is_in_the_repository() -> None:
    named = set(re.findall(r"`((?:[\w-]+/)+[\w.-]+\.(?:txt|json|md|py|yaml|sh|toml))`", README))
    assert "docs/callbacks-api.txt" in named
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == []


def test_the_production_steps_install_what_they_run() -> None:
    (block,) = [b for b in re.findall(r"```sh\n(.*?)```", README, re.S) if "honcho start" in b]
    (install,) = re.findall(r'pip install "?\.\[(\w+)\]"?', block)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("honcho") for dep in extras[install])


def test_the_readme_shows_schedule_and_says_what_the_log_dialer_is() -> None:
    assert "callbacks schedule --org" in README
    for field in ("organization_id", "to_number", "scheduled_at", "idempotency_key"):
        assert f"`{field}`" in README
    assert "**The log-only dialer** places no call" in README
    assert "logdialer-no-call-" in README
    # Workers have no pool pre-ping (it was removed); the README may only say so.
    for found in re.finditer("pre-ping", README):
        assert README[: found.start()].endswith("no pool "), README[
            found.start() - 80 : found.end()
        ]
