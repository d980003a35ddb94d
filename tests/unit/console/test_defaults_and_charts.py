"""The console's defaults match the worker's; the SVG charts escape what they show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker.api.console.charts import bars
from worker.api.console.orgs import defaults_from
from worker.runtime import pacing_from_settings
from worker.settings import Settings


def test_console_defaults_are_the_workers() -> None:
    settings = Settings(
        calling_window_start="09:00", calling_window_end="17:30", max_dials_per_minute_per_org=7
    )
    assert defaults_from(settings).pacing == pacing_from_settings(settings)
    assert defaults_from(settings).redials == settings.redial_defaults


def test_chart_bars_scale_and_escape() -> None:
    t0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    svg = str(bars("<b>x</b>", [(t0 + timedelta(minutes=i), float(i)) for i in range(5)], "&"))
    assert "<b>" not in svg
    assert "&lt;b&gt;" in svg
    assert svg.count("<rect") == 4  # the zero bar is not drawn
    assert ">5&amp;<" in svg  # the axis rounds 4 up to 5
