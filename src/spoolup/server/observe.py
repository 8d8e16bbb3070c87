"""What the upload routes and the tus mount call so that metrics and hooks see each upload.

``POST /api/files`` and ``PUT /api/files/{name}`` each open one :class:`UploadObserver`
with :func:`observe_upload`: it counts the upload and its body bytes, adds the hook
handler to the chain when hooks are set, runs pre-finish on the stored files (and
deletes them all if one is refused) and starts post-finish once the client has its
answer. With no hook set it adds nothing to the chain.

The tus app is observed from outside by a :class:`TusObserver`: it wraps the mounted
app (body bytes, post-create, post-receive, post-terminate, from the requests and
answers) and its completion callback (pre-finish, post-finish); pre-create is the tus
app's ``on_create`` callback.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spoolup.handlers import HandlerSpec
from spoolup.server.hooks import HookDispatcher, HookHandler, HookRequest, HttpInfo
from spoolup.server.metrics import Metrics, status_reason
from spoolup.server.records import FileRecord, new_file_id
from spoolup.server.store import RecordStore, key_of

if TYPE_CHECKING:
    from spoolup.files import UploadedFile

__all__ = ["TusObserver", "UploadObserver", "file_terminated", "observe_upload"]


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


# -- tus ----------------------------------------------------------------------------------


@dataclass
class _TusRequest:
    """What the observer knows of the tus request being served."""

    http: HttpInfo | None
    # the upload this request creates, as pre-create left it (for post-create)
    created: HookRequest | None = None
    # hooks to start once the answer is sent (post-finish)
    after: list[HookRequest] = field(default_factory=list)
    failure_counted: bool = False


_TUS_REQUEST: contextvars.ContextVar[_TusRequest | None] = contextvars.ContextVar(
    "spoolup_tus_request", default=None
)
_NO_HTTP = HttpInfo(method="", uri="", remote_addr="", headers={})


def _decoded(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """tus ``Upload-Metadata`` pairs (base64 values) as text; undecodable values left out."""
    out = {}
    for key, encoded in pairs:
        try:
            out[key] = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            continue
    return out


Adopt = Callable[["UploadedFile", Any], Awaitable[Mapping[str, Any]]]


class TusObserver:
    """The tus app as metrics and hooks see it (see the module docstring)."""

    def __init__(self, metrics: Metrics, hooks: HookDispatcher, store: RecordStore) -> None:
        self.metrics = metrics
        self.hooks = hooks
        self.store = store

    def count_sweeps(self, tus: Any) -> None:
        """Count the tus app's expiry sweeps (``sweeps_total{kind="tus"}``) and removals.

        Its ``sweep`` method is wrapped on the instance: the sweeper loop calls it there.
        """
        sweep = tus.sweep
        metrics = self.metrics

        async def counted_sweep() -> Any:
            try:
                removed = await sweep()
            except Exception:
                metrics.sweep("tus", failed=True)
                raise
            metrics.sweep("tus", removed=len(removed))
            return removed

        tus.sweep = counted_sweep

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """``app`` observed: body bytes counted, post-create/receive/terminate started."""

        async def observed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            await self._serve(app, scope, receive, send)

        return observed

    async def _serve(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = str(headers.get("x-http-method-override", scope["method"])).upper()
        hooks = self.hooks.active
        state = _TusRequest(http=HttpInfo.from_scope(scope) if hooks else None)
        token = _TUS_REQUEST.set(state)
        upload_id = str(scope["path"]).rstrip("/").rpartition("/")[2] or None
        counting = receive
        if method in {"POST", "PATCH"}:
            receive = counting = self.metrics.receiving("tus", receive)
            if method == "PATCH" and state.http is not None and self.hooks.wants("post-receive"):
                receive = self._progress(receive, state.http, upload_id, headers)
        status = 0

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, watching_send)
        finally:
            Metrics.request_done(counting)
            _TUS_REQUEST.reset(token)
        self._answered(method, status, state, upload_id)

    def _answered(
        self, method: str, status: int, state: _TusRequest, upload_id: str | None
    ) -> None:
        if method == "POST" and status == 201:
            self.metrics.upload_started("tus")
            if state.created is not None:
                self.hooks.fire(state.created)
        elif method == "POST" and status >= 400 and not state.failure_counted:
            self.metrics.upload_failed("tus", status_reason(status))
        elif method == "DELETE" and status == 204 and state.http is not None and upload_id:
            self.hooks.fire(
                HookRequest(
                    hook="post-terminate",
                    way="tus",
                    upload_id=upload_id,
                    size=None,
                    offset=0,
                    metadata={},
                    http=state.http,
                )
            )
        for request in state.after:
            self.hooks.fire(request)

    async def before_create(self, info: Any) -> None:
        """The tus app's ``on_create``: run pre-create, which may refuse or add metadata."""
        state = _TUS_REQUEST.get()
        if state is None or state.http is None:
            return
        request = HookRequest(
            hook="pre-create",
            way="tus",
            upload_id=None,
            size=info.length,
            offset=0,
            metadata=_decoded(info.metadata),
            http=state.http,
        )
        if self.hooks.wants("pre-create"):
            try:
                added = (await self.hooks.call(request)).metadata
            except BaseException as exc:  # counted by its cause, not by the status it became
                self.metrics.upload_failed("tus", exc)
                state.failure_counted = True
                raise
            if added:
                kept = tuple((k, v) for k, v in info.metadata if k not in added)
                info.metadata = kept + tuple(
                    (k, base64.b64encode(v.encode()).decode()) for k, v in added.items()
                )
                request = dataclasses.replace(request, metadata={**request.metadata, **added})
        state.created = dataclasses.replace(request, hook="post-create", upload_id=info.id)

    def _progress(
        self, receive: Receive, http: HttpInfo, upload_id: str | None, headers: Mapping[str, str]
    ) -> Receive:
        raw_offset = headers.get("upload-offset", "")
        offset = int(raw_offset) if raw_offset.isdigit() and len(raw_offset) < 20 else 0
        last = time.monotonic()

        async def progress_receive() -> Message:
            nonlocal offset, last
            message = await receive()
            if message["type"] == "http.request":
                offset += len(message.get("body", b""))
                now = time.monotonic()
                if now - last >= self.hooks.progress_interval and upload_id:
                    last = now
                    self.hooks.fire(
                        HookRequest(
                            hook="post-receive",
                            way="tus",
                            upload_id=upload_id,
                            size=None,
                            offset=offset,
                            metadata={},
                            http=http,
                        )
                    )
            return message

        return progress_receive

    def completion(self, adopt: Adopt) -> Adopt:
        """The tus completion callback: ``adopt`` (keep the file as a record), observed."""

        async def on_complete(uploaded: UploadedFile, info: Any) -> Mapping[str, Any]:
            return await self._complete(adopt, uploaded, info)

        return on_complete

    async def _complete(self, adopt: Adopt, uploaded: UploadedFile, info: Any) -> Mapping[str, Any]:
        """Keep the file, run pre-finish, queue post-finish (started once answered).

        A refusing pre-finish deletes the kept file and raises :class:`HookRejected`: the
        tus app then removes the upload and answers with the hook's status.
        """
        state = _TUS_REQUEST.get()
        try:
            record = await adopt(uploaded, info)
            request = HookRequest(
                hook="pre-finish",
                way="tus",
                upload_id=info.id,
                size=info.length,
                offset=info.offset,
                metadata=_decoded(info.metadata),
                http=(state.http if state else None) or _NO_HTTP,
                record=record,
                storage_key=key_of(record["id"]),
            )
            if self.hooks.wants("pre-finish"):
                try:
                    await self.hooks.call(request)
                except BaseException:
                    await asyncio.shield(self.store.delete(record["id"]))
                    raise
        except BaseException as exc:
            self.metrics.upload_failed("tus", exc)
            if state is not None:
                state.failure_counted = True
            raise
        self.metrics.upload_completed("tus")
        if self.hooks.wants("post-finish"):
            finish = dataclasses.replace(request, hook="post-finish")
            if state is not None:
                state.after.append(finish)
            else:
                self.hooks.fire(finish)
        return record
