"""The console's defaults are the settings'; the SVG charts escape what they show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker.api.console.charts import bars
from worker.api.console.orgs import defaults_from
from worker.pacing.windows import Window
from worker.settings import Settings


def test_console_defaults_are_the_settings() -> None:
    settings = Settings(
        calling_window_start="09:00",
        calling_window_end="17:30",
        max_dials_per_minute_per_org=7,
        max_concurrent_per_org=3,
        redial_max=2,
    )
    defaults = defaults_from(settings)
    assert defaults.pacing.window == Window.parse("09:00", "17:30", settings.calling_window_days)
    assert defaults.pacing.max_dials_per_minute == 7
    assert defaults.pacing.max_concurrent == 3
    assert defaults.redials.max == 2


def test_chart_bars_scale_and_escape() -> None:
    t0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    svg = str(bars("<b>x</b>", [(t0 + timedelta(minutes=i), float(i)) for i in range(5)], "&"))
    assert "<b>" not in svg
    assert "&lt;b&gt;" in svg
    assert svg.count("<rect") == 4  # the zero bar is not drawn
    assert ">5&amp;<" in svg  # the axis rounds 4 up to 5
