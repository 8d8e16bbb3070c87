"""What the upload routes call so that metrics and hooks see each upload.

``POST /api/files`` and ``PUT /api/files/{name}`` each open one :class:`UploadObserver`
with :func:`observe_upload`: it counts the upload and its body bytes, adds the hook
handler to the chain when hooks are set, runs pre-finish on the stored files (and
deletes them all if one is refused) and starts post-finish once the client has its
answer. With no hook set it adds nothing to the chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request

from spoolup.handlers import HandlerSpec
from spoolup.server.hooks import HookDispatcher, HookHandler, HookRequest, HttpInfo
from spoolup.server.metrics import Metrics
from spoolup.server.records import FileRecord, new_file_id
from spoolup.server.store import RecordStore, key_of

__all__ = ["UploadObserver", "file_terminated", "observe_upload"]


class UploadObserver:
    """One multipart or PUT upload request, as metrics and hooks see it.

    Attributes:
        receive: the request's ``receive``, counting body bytes; read the body with it.
    """

    def __init__(self, request: Request, way: str) -> None:
        state = request.app.state
        self.metrics: Metrics = state.metrics
        self.hooks: HookDispatcher = state.hooks
        self.store: RecordStore = state.store
        self.way = way
        self.scope = request.scope
        self.receive = self.metrics.receiving(way, request.receive)
        self._handler: HookHandler | None = None

    def handlers(self) -> list[HandlerSpec]:
        """The handler chain: the hook handler (if any hook is set), then storage."""
        if not self.hooks.active:
            return [self.store.handler]
        hook_handler = HookHandler(
            self.hooks,
            way=self.way,
            http=HttpInfo.from_scope(self.scope),
            loop=asyncio.get_running_loop(),
            new_id=new_file_id,
            key_of=key_of,
        )
        self._handler = hook_handler

        def storing() -> Any:
            return self.store.handler(
                key_func=hook_handler.key_func, metadata_func=hook_handler.metadata_func
            )

        return [hook_handler, storing]

    def _request(self, hook: str, record: FileRecord) -> HookRequest:
        extra = self._handler.metadata.get(record.id, {}) if self._handler else {}
        return HookRequest(
            hook=hook,
            way=self.way,
            upload_id=record.id,
            size=record.size,
            offset=record.size,
            metadata={"filename": record.filename, "filetype": record.content_type, **extra},
            http=self._handler.http if self._handler else HttpInfo.from_scope(self.scope),
            record=record.to_json(),
            storage_key=key_of(record.id),
        )

    async def pre_finish(self, records: Sequence[FileRecord]) -> None:
        """Run pre-finish on every stored file; if one is refused, none is kept."""
        if not self.hooks.wants("pre-finish"):
            return
        try:
            for record in records:
                await self.hooks.call(self._request("pre-finish", record))
        except BaseException:
            await asyncio.shield(self._delete(records))
            raise

    async def _delete(self, records: Sequence[FileRecord]) -> None:
        for record in records:
            await self.store.delete(record.id)

    def post_finish(self, records: Sequence[FileRecord]) -> BackgroundTask | None:
        """The task that starts post-finish for each file once the answer is sent."""
        if not self.hooks.wants("post-finish"):
            return None

        async def fire() -> None:
            for record in records:
                self.hooks.fire(self._request("post-finish", record))

        return BackgroundTask(fire)


@contextmanager
def observe_upload(request: Request, way: str) -> Iterator[UploadObserver]:
    """Observe one upload request of ``way`` (``multipart`` or ``put``) while it runs."""
    observer = UploadObserver(request, way)
    try:
        with observer.metrics.upload(way):
            yield observer
    finally:
        Metrics.request_done(observer.receive)


async def file_terminated(request: Request, record: FileRecord) -> None:
    """Start post-terminate for a file deleted with ``DELETE /api/files/{id}``."""
    hooks: HookDispatcher = request.app.state.hooks
    if hooks.wants("post-terminate"):
        hooks.fire(
            HookRequest(
                hook="post-terminate",
                way=None,
                upload_id=record.id,
                size=record.size,
                offset=record.size,
                metadata={"filename": record.filename, "filetype": record.content_type},
                http=HttpInfo.from_scope(request.scope),
                record=record.to_json(),
                storage_key=key_of(record.id),
            )
        )
