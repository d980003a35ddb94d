"""Credentials never reach a terminal or a log: one place that masks them.

``redact_url`` masks one URL (``DATABASE_URL``, ``BROKER_URL``, ``SPEKO_API_URL``...);
``Redactor`` masks every URL password and every configured secret in any text (a log
line, an error message, a child process's output). ``RedactingHandler`` applies it to
each formatted log record, whatever its format (JSON or console) and wherever the
secret sits in it (message, exception text, extra fields).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from worker.settings import Settings

MASK = "***"

# scheme://user:password@  (user may be empty: redis://:password@host)
_USERINFO = re.compile(
    r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@\"'<>]*:)(?P<pw>[^\s@/\"'<>]+)@"
)
# ?password=...  &sslpassword=...  (libpq and many drivers take secrets as parameters)
_SECRET_PARAM = re.compile(
    r"(?P<head>[?&;](?:[a-z_]*pass(?:word)?|pwd|secret|token|api_?key|access_?key)=)(?P<value>[^&\s\"'#]+)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """The URL with its password (and secret query parameters) replaced by ``***``."""
    return _redact_urls(url)


def _redact_urls(text: str) -> str:
    text = _USERINFO.sub(lambda m: m["head"] + MASK + "@", text)
    return _SECRET_PARAM.sub(lambda m: m["head"] + MASK, text)


def secrets_in(urls: Iterable[str | None], values: Iterable[str | None] = ()) -> set[str]:
    """The literal secrets to mask anywhere: the passwords of these URLs and ``values``."""
    found: set[str] = set()
    for url in urls:
        if not url:
            continue
        try:
            parts = urlsplit(url)
            password = parts.password
            params = parse_qsl(parts.query)
        except ValueError:
            continue
        if password:
            found.update({password, unquote(password)})
        found.update(v for k, v in params if _SECRET_PARAM.match(f"?{k}=x"))
    found.update(v for v in values if v)
    # A very short "secret" would mask ordinary words; those are masked in URLs only.
    return {s for s in found if len(s) >= 4}


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            # As written, and as a JSON log line escapes it.
            forms.update({secret, json.dumps(secret)[1:-1]})
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        text = _redact_urls(text)
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


class RedactingHandler(logging.StreamHandler[TextIO]):
    """A stream handler whose every formatted line has passed through a ``Redactor``."""

    def __init__(self, stream: TextIO, redactor: Redactor) -> None:
        super().__init__(stream)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(super().format(record))


def redactor_for(settings: Settings) -> Redactor:
    """Masks every credential these settings hold."""
    urls = [
        settings.database_url,
        settings.broker_url,
        str(settings.speko_api_url) if settings.speko_api_url else None,
    ]
    return Redactor(secrets_in(urls, [settings.speko_api_key]))
