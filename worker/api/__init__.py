"""The admin HTTP API (``/v1/callbacks``): thin routes over :mod:`worker.actions`.

Build it with :func:`worker.api.app.create_app`; :mod:`worker.api.asgi` holds an app
built from the environment for ``uvicorn worker.api.asgi:app``.
"""
