"""tus 1.0.0 resumable uploads: a sans-IO protocol core and an ASGI app over storage.

``create_tus_app(storage, max_size=..., expiry=..., on_complete=...)`` builds the app
that ``spoolup serve`` mounts at ``/tus/``. :mod:`spoolup.tus.protocol` is the core (no
I/O), :mod:`spoolup.tus.state` the upload state kept in storage as JSON, and
:mod:`spoolup.tus.store` the one store over any storage backend, and
:mod:`spoolup.tus.client` a small blocking client.
"""

from spoolup.tus.app import CompletionCallback, TusApp, create_tus_app
from spoolup.tus.protocol import TUS_VERSION, TusLimits, TusProtocol
from spoolup.tus.state import UploadInfo
from spoolup.tus.store import TusStore

__all__ = [
    "TUS_VERSION",
    "CompletionCallback",
    "TusApp",
    "TusLimits",
    "TusProtocol",
    "TusStore",
    "UploadInfo",
    "create_tus_app",
]
