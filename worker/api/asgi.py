"""``uvicorn worker.api.asgi:app``: the admin API built from the environment.

Importing this module builds the app (that is its only purpose); everything else uses
:func:`worker.api.app.create_app`.
"""

from worker.api.app import create_app
from worker.logs import configure_logging
from worker.settings import load_settings

_settings = load_settings()
# Replaces the handlers uvicorn's command line installed: the same lines as the worker.
configure_logging(_settings)
app = create_app(_settings)
