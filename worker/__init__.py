"""Scheduled-callback worker: claims due callbacks and places them exactly once.

The Celery app for ``celery -A worker`` lives in :mod:`worker.celery`; importing this
package does no wiring.
"""

__version__ = "0.1.0"
