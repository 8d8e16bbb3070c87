"""The client commands of ``spoolup``: ``upload``, ``ls``, ``get``, ``rm``, ``share``.

Each module adds its subcommands to the parser (``add_parsers``) and runs them; the
``spoolup`` entry point itself (and ``serve``) lives in :mod:`spoolup.cli`.
"""
