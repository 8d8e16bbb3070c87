"""The Python peer of ``bench_tus``: tuspyserver's FastAPI router, served by uvicorn.

``uvicorn benchmarks.tus_peers:tuspyserver_app --factory`` serves tus at ``/files/``,
storing in the folder named by ``TUS_BENCH_DIR``.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from tuspyserver import create_tus_router


def tuspyserver_app() -> FastAPI:
    """tuspyserver's router at ``/files``, files in ``$TUS_BENCH_DIR``."""
    app = FastAPI()
    router = create_tus_router(
        prefix="files", files_dir=os.environ["TUS_BENCH_DIR"], max_size=16 * 1024**3
    )
    app.include_router(router)
    return app
