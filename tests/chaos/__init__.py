"""The chaos harness (issue 4, item 10): ``python -m tests.chaos --help``."""
