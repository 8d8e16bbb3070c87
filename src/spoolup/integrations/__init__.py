"""Thin adapters from web frameworks' request objects to spoolup's drivers.

Each module imports its framework and nothing in it is needed by the core; import the
one you use: ``spoolup.integrations.starlette`` (also FastAPI, Litestar-free ASGI apps
built on Starlette), ``spoolup.integrations.flask`` (Flask or any Werkzeug request) and
``spoolup.integrations.django``.
"""
