"""The ``callbacks`` console script."""
