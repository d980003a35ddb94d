"""freezegun, configured for this suite (loaded by tests/conftest.py as a plugin).

pytest times each phase with ``_pytest.timing``'s own references to ``time`` and
``perf_counter``; freezegun patches those too, and its default ignore list names
``_pytest.runner.`` (with a trailing dot, which never matches the module ``_pytest.runner``).
A fixture that freezes the clock in setup then made ``pytest --durations`` report ~1.77e9 s.
"""

from __future__ import annotations

import freezegun

freezegun.configure(extend_ignore_list=["_pytest.timing"])
