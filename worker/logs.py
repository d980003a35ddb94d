"""Logging: JSON lines in production, readable console lines in the embedded default.

Everything goes through the standard library (ours, Celery's, uvicorn's); structlog's
formatter renders each record, with any ``extra={...}`` fields as keys. Transitions log
callback id, organization, attempt, from → to, actor and why (:mod:`worker.lifecycle`).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from worker.redact import RedactingHandler, redactor_for
from worker.settings import Settings


def configure_logging(settings: Settings) -> None:
    shared: list[structlog.typing.Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # JSON escapes control characters by construction; console lines escape them here.
    render: list[structlog.typing.Processor] = (
        [structlog.processors.JSONRenderer()]
        if settings.effective_log_format == "json"
        else [one_line, structlog.dev.ConsoleRenderer(colors=False)]
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            *render,
        ],
    )
    # Every line is masked: no password or API key reaches a log (worker.redact).
    handler = RedactingHandler(sys.stderr, redactor_for(settings))
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level.upper())
    for name in SERVER_LOGGERS:
        # uvicorn's own handlers (plain text, its own format) give way to ours.
        server = logging.getLogger(name)
        server.handlers = []
        server.propagate = True


SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: anything a
# terminal or a log shipper may take for the end of a line.
_LINE_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return named.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def escape_controls(text: str) -> str:
    return _LINE_BREAKING.sub(_escape, text)


def one_line(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """No value from a request (a path with ``%0a``, a reason) can start a new console
    line: control characters in every string are written as escapes. A traceback keeps
    its lines, each indented, so none of them can pass for a log line either."""
    for key, value in event_dict.items():
        if key == "exception" and isinstance(value, str):
            lines = value.split("\n")
            event_dict[key] = "\n".join("    " + escape_controls(line) for line in lines)
        elif isinstance(value, str):
            event_dict[key] = escape_controls(value)
    return event_dict
