"""``python -m tests.perf``: the whole benchmark suite (see tests/perf/run.py)."""

from tests.perf.run import main

main()
