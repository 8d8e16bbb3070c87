"""The upload server behind ``spoolup serve``: an ASGI app over spoolup and its storage.

``create_app(config)`` (in :mod:`spoolup.server.app`) builds it; :mod:`.config` reads
the settings; the page and its script are in ``static/``.
"""
