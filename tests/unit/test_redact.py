"""Credentials are masked in every URL and wherever a configured secret appears."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from worker.logs import configure_logging
from worker.redact import Redactor, redact_url, redactor_for, secrets_in
from worker.settings import Settings


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://postgres:s3cretpw@127.0.0.1:5432/db",
            "postgresql+psycopg://postgres:***@127.0.0.1:5432/db",
        ),
        ("redis://:redispw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("rediss://default:pw%2Fx@cache:6380", "rediss://default:***@cache:6380"),
        ("https://user:tok@speko.example/api", "https://user:***@speko.example/api"),
        (
            "postgresql://h/db?sslmode=require&password=abc",
            "postgresql://h/db?sslmode=require&password=***",
        ),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("http://127.0.0.1:8000/v1/callbacks", "http://127.0.0.1:8000/v1/callbacks"),
        ("filesystem://", "filesystem://"),
    ],
)
def test_redact_url_masks_the_password_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_configured_secret_is_masked_wherever_it_appears() -> None:
    redactor = Redactor(
        secrets_in(["postgresql+psycopg://u:p@ss%40w0rd@h/db"], ["sk_live_key", None])
    )
    line = 'error: auth failed for "p@ss@w0rd" with key sk_live_key {"k": "sk_live_key"}'
    assert "w0rd" not in redactor(line)
    assert "sk_live_key" not in redactor(line)


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level


@pytest.mark.usefixtures("root_logging")
def test_log_lines_never_carry_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        database_url="postgresql+psycopg://postgres:s3cretpw@127.0.0.1:5432/db",
        broker_url="redis://:redispw@127.0.0.1:6379/0",
        speko_api_url="https://user:spekopw@speko.example",
        speko_api_key="sk_secret_key",
    )
    for fmt in ("json", "console"):
        stream = io.StringIO()
        monkeypatch.setattr("sys.stderr", stream)
        configure_logging(settings.model_copy(update={"log_format": fmt}))
        log = logging.getLogger("test.redact")
        log.error("cannot connect to %s", settings.database_url, extra={"url": settings.broker_url})
        try:
            raise RuntimeError(f"dial {settings.speko_api_url} with {settings.speko_api_key}")
        except RuntimeError:
            log.exception("failed")
        out = stream.getvalue()
        for secret in ("s3cretpw", "redispw", "spekopw", "sk_secret_key"):
            assert secret not in out, (fmt, out)
        assert "postgres:***@127.0.0.1" in out


def test_redactor_for_settings_without_secrets_changes_nothing() -> None:
    assert redactor_for(Settings())("plain line") == "plain line"
