"""``uvicorn worker.api.asgi:app``: the admin API built from the environment.

Importing this module builds the app (that is its only purpose); everything else uses
:func:`worker.api.app.create_app`.
"""

from worker.api.app import create_app
from worker.settings import load_settings

app = create_app(load_settings())
