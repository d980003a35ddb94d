"""Logging: JSON lines in production, readable console lines in the embedded default.

Everything goes through the standard library (ours, Celery's, uvicorn's); structlog's
formatter renders each record, with any ``extra={...}`` fields as keys. Transitions log
callback id, organization, attempt, from → to, actor and why (:mod:`worker.transitions`).
"""

from __future__ import annotations

import logging
import sys

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
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if settings.effective_log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    # Every line is masked: no password or API key reaches a log (worker.redact).
    handler = RedactingHandler(sys.stderr, redactor_for(settings))
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level.upper())


def mask_number(number: str | None) -> str | None:
    """Phone numbers never appear in clear at INFO: keep the last 4 digits."""
    if not number:
        return number
    return "*" * max(0, len(number) - 4) + number[-4:]
