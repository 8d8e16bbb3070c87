"""The apps of the framework benchmark (``benchmarks/bench_frameworks.py``), one module each.

A module ``<name>_app.py`` holds two factories, ``native_app()`` (the framework's own
upload handling, written the way its documentation shows) and ``spoolup_app()`` (the
same app through ``spoolup.integrations``), each returning an ASGI or a WSGI app with
the same three routes:

- ``POST /backup``: a multipart form with one file in field ``file``; the file is kept
  under :func:`common.dest_path` and the answer is JSON ``{"sha256": <hex>}``.
- ``POST /image``: a form with an image in field ``image`` of at most
  :data:`common.IMAGE_LIMIT` bytes, checked in memory (Pillow reads its size), never
  written to disk; JSON ``{"width": w, "height": h}``, 413 above the limit.
- ``POST /limited``: any form, with the framework's own body-size setting at
  :data:`common.LIMIT`; a larger body is a 413.

The server process loads them through :mod:`benchmarks.frameworks.serve`, which wraps
the app to count the body bytes it reads.
"""
