"""Issue 11, item 19: freezegun does not break `pytest --durations`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FROZEN_IN_A_FIXTURE = """
import pytest
from freezegun import freeze_time

@pytest.fixture
def frozen():
    with freeze_time("2080-01-02"):
        yield

def test_frozen(frozen):
    pass
"""


def _durations(tmp_path: Path, *plugin: str) -> list[float]:
    (tmp_path / "test_frozen.py").write_text(FROZEN_IN_A_FIXTURE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *plugin, "-c", str(tmp_path / "pytest.ini"),
         "-p", "no:cacheprovider", "--durations=0", "-vv", str(tmp_path / "test_frozen.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return [
        float(s) for s in re.findall(r"^([0-9.e+]+)s (?:setup|call|teardown)", done.stdout, re.M)
    ]


def test_durations_are_real_with_our_freezegun_configuration(tmp_path: Path) -> None:
    unconfigured = _durations(tmp_path)
    assert max(unconfigured) > 1e8, "the control: freezegun's defaults break --durations"
    configured = _durations(tmp_path, "-p", "tests.support.freezing")
    assert len(configured) == 3
    assert max(configured) < 60
