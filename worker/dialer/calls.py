"""Reading a placed call back from the platform: ``GET {SPEKO_API_URL}/v1/calls/{id}/events``
and ``/report`` (shared/spec/speko-calls-and-events.md), for the outcome pull."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import urllib3
from urllib3.exceptions import HTTPError

from worker.call_outcome import PullFailed, Signals, combine, signals_of


class SpekoCalls:
    def __init__(
        self, base_url: str, api_key: str, *, connect_timeout: float, read_timeout: float
    ) -> None:
        self._base = base_url.rstrip("/") + "/v1/calls/"
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": "callbacks-worker",
        }
        self._http = urllib3.PoolManager(
            num_pools=2,
            maxsize=4,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=False,
        )

    def close(self) -> None:
        self._http.clear()

    def _get(self, path: str) -> dict[str, Any] | None:
        """The JSON object at ``path``; None if the platform has none (404)."""
        try:
            response = self._http.request("GET", self._base + path, headers=self._headers)
        except HTTPError as exc:
            raise PullFailed(f"platform unreachable: {type(exc).__name__}") from None
        if response.status == 404:
            return None
        if response.status != 200:
            raise PullFailed(f"platform answered HTTP {response.status}")
        try:
            body = json.loads(response.data)
        except ValueError:
            raise PullFailed("platform answered with a body that is not JSON") from None
        if not isinstance(body, dict):
            raise PullFailed("platform answered with a body that is not an object")
        return body

    def read(self, call_id: str) -> Signals:
        """The signals of the call's events and report (a report not there yet: none)."""
        segment = quote(call_id, safe="")
        events = self._get(f"{segment}/events") or {}
        report = self._get(f"{segment}/report")
        parts = [
            signals_of(str(e.get("event_type") or ""), e)
            for e in events.get("events", [])
            if isinstance(e, dict)
        ]
        if report is not None:
            parts.append(signals_of("call.report", report))
        return combine(parts)
