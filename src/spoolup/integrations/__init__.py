"""Thin adapters from web frameworks to the drivers :mod:`spoolup.asgi` and :mod:`spoolup.wsgi`.

Each module imports its framework and nothing in it is needed by the core; import the
one you use: ``spoolup.integrations.django`` (middleware, settings, Django files),
``.fastapi`` (``form()`` and ``upload_file()`` dependencies, OpenAPI bodies),
``.starlette`` (``parse_form``, and ``install(app)`` for Starlette and FastAPI apps),
``.flask`` (the ``Spoolup`` extension: ``request.files`` are spoolup's) and
``.litestar`` (``SpoolupPlugin``: a ``form`` dependency). None has a parser or a handler
loop of its own; each honours its framework's limit settings, answers an
``UploadError`` with its status, and detects a body that something else already read.
"""
