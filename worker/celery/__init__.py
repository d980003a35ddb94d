"""The Celery adapter: the app for ``celery -A worker``, its configuration and its tasks.

``celery -A worker`` finds :data:`app` here. It is built on first access, from the
environment, so importing this package (for :mod:`worker.celery.config`, say) wires
nothing and creates nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.celery.app import CallbacksCelery

    app: CallbacksCelery


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from worker.celery.app import create_celery
    from worker.settings import load_settings

    built = create_celery(load_settings())
    globals()["app"] = built
    return built
