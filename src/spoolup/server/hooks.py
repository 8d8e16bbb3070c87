"""tusd-style hooks: the server tells an application about each upload, and may be told no.

Six hooks, for every way a file arrives (``POST /api/files``, ``PUT /api/files/{name}``
and tus), named and shaped as tusd's are:

===============  ========  ==========================================================
hook             blocking  when
===============  ========  ==========================================================
pre-create       yes       a file is about to be received; may refuse it (a status
                           and a message for the client) or add metadata to it
post-create      no        the file was accepted and has its id
post-receive     no        bytes are arriving (at most one call per file and interval)
pre-finish       yes       every byte is stored, before the client is answered; may
                           refuse it, and the file is then not kept
post-finish      no        the file is stored and the client answered
post-terminate   no        a file or an unfinished tus upload was deleted
===============  ========  ==========================================================

They reach the application two ways, both optional:

- **HTTP webhooks** (``--hook-url``): a ``POST`` of the JSON of :meth:`HookRequest.to_json`
  (tusd's ``{"Type", "Event": {"Upload", "HTTPRequest"}}``), signed with
  ``X-Spoolup-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`` when
  ``--hook-secret`` is set (as GitHub signs; check with :func:`verify_signature`). The
  answer is tusd's hook response: ``{"RejectUpload": true, "HTTPResponse":
  {"StatusCode": 403, "Body": "..."}}`` refuses, ``{"ChangeFileInfo": {"MetaData":
  {...}}}`` (pre-create) adds metadata, an empty body accepts. A blocking hook gets one
  try within ``--hook-timeout``; if it cannot be reached or fails, the upload is
  refused with a 502 saying so. The others are sent in the background, retried
  ``--hook-retries`` times with growing pauses on network errors and 5xx answers.
- **Python callables** (``create_app(config, hooks={"pre-create": check, ...})``):
  each gets a :class:`HookRequest` and returns ``None`` (go on) or a
  :class:`HookResponse`, or raises :class:`HookRejected`; sync or async.

Like tusd's, hooks may arrive in any order but pre-create comes first for an upload
and post-finish after its pre-finish.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from spoolup.errors import UploadError
from spoolup.handlers import UploadHandler
from spoolup.storage import InvalidMetadata
from spoolup.storage.meta import validate_metadata

if TYPE_CHECKING:
    from starlette.types import Scope

    from spoolup.files import FileInfo
    from spoolup.server.config import ServerConfig
    from spoolup.server.metrics import Metrics

__all__ = [
    "BLOCKING_HOOKS",
    "HOOKS",
    "SIGNATURE_HEADER",
    "HookCallable",
    "HookDispatcher",
    "HookFailed",
    "HookHandler",
    "HookRejected",
    "HookRequest",
    "HookResponse",
    "HttpInfo",
    "Webhook",
    "sign",
    "verify_signature",
]

logger = logging.getLogger("spoolup.hooks")

HOOKS: Final = (
    "pre-create",
    "post-create",
    "post-receive",
    "pre-finish",
    "post-finish",
    "post-terminate",
)
"""Every hook, in the order of an upload's life."""

BLOCKING_HOOKS: Final = frozenset({"pre-create", "pre-finish"})
"""The hooks the upload waits for, and which may refuse it."""

SIGNATURE_HEADER: Final = "X-Spoolup-Signature-256"
"""The webhook request header carrying ``sha256=<hex HMAC-SHA256 of the body>``."""

# A hook's answer is a small JSON document: read no more than this of it.
_MAX_ANSWER = 64 * 1024
_MAX_MESSAGE = 500
# Background deliveries waiting at once; past this, new ones are dropped (and counted).
_MAX_PENDING = 1000
_MAX_BACKOFF = 30.0
_DROPPED_HEADERS = frozenset({"authorization", "proxy-authorization"})


class HookRejected(UploadError):
    """A hook refused the upload; ``status`` and ``message`` are the hook's (400 by default).

    Raise it from a Python hook to refuse; the client gets ``{"error": message}``.
    """

    status = 400
    close_connection = True  # the rest of the body is not wanted


class HookFailed(UploadError):
    """A blocking hook could not be reached, timed out, or answered nonsense (502)."""

    status = 502
    close_connection = True


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpInfo:
    """The client's request that caused a hook (its credentials left out)."""

    method: str
    uri: str
    remote_addr: str
    headers: Mapping[str, list[str]]
    request_id: str | None = None

    @classmethod
    def from_scope(cls, scope: Scope) -> HttpInfo:
        """Describe the ASGI request ``scope`` (``Authorization`` is never passed on)."""
        headers: dict[str, list[str]] = {}
        for raw_name, raw_value in scope.get("headers", ()):
            name = raw_name.decode("latin-1").lower()
            if name not in _DROPPED_HEADERS:
                headers.setdefault(name, []).append(raw_value.decode("latin-1"))
        query = scope.get("query_string", b"").decode("latin-1")
        client = scope.get("client")
        state = scope.get("state") or {}
        return cls(
            method=str(scope.get("method", "")),
            uri=str(scope.get("root_path", "")) + str(scope.get("path", ""))
            + (f"?{query}" if query else ""),
            remote_addr=f"{client[0]}:{client[1]}" if client else "",
            headers=headers,
            request_id=state.get("request_id"),
        )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class HookRequest:
    """What a hook is told about one upload.

    Attributes:
        hook: one of :data:`HOOKS`.
        way: ``multipart``, ``put`` or ``tus`` (``None`` for a stored file deleted).
        upload_id: the file id (the tus upload id for tus), ``None`` in pre-create.
        size: the file's size when known (``None``: not yet, as in a multipart body).
        offset: bytes received so far.
        metadata: the file's metadata: ``filename``, ``filetype`` and, for tus, what the
            client sent in ``Upload-Metadata``; for multipart also ``fieldname``.
        record: the file record, in pre-finish (without ``created``), post-finish.
        http: the client's request.
    """

    hook: str
    way: str | None
    upload_id: str | None
    size: int | None
    offset: int
    metadata: Mapping[str, str]
    http: HttpInfo
    record: Mapping[str, Any] | None = None
    storage_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The webhook body: tusd's hook request, plus ``Way`` and ``Record``."""
        return {
            "Type": self.hook,
            "Event": {
                "Upload": {
                    "ID": self.upload_id,
                    "Size": self.size,
                    "SizeIsDeferred": self.size is None,
                    "Offset": self.offset,
                    "MetaData": dict(self.metadata),
                    "IsPartial": False,
                    "IsFinal": False,
                    "PartialUploads": None,
                    "Storage": {"Type": "spoolup", "Key": self.storage_key}
                    if self.storage_key
                    else None,
                    "Way": self.way,
                    "Record": dict(self.record) if self.record is not None else None,
                },
                "HTTPRequest": {
                    "Method": self.http.method,
                    "URI": self.http.uri,
                    "RemoteAddr": self.http.remote_addr,
                    "Header": {k: list(v) for k, v in self.http.headers.items()},
                    "RequestID": self.http.request_id,
                },
            },
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class HookResponse:
    """A hook's answer: go on (the default), refuse, or add metadata (pre-create).

    Attributes:
        reject: refuse the upload (pre-create and pre-finish only).
        status: the HTTP status the client gets when refused (400 to 599; 400 if unset).
        message: what the client is told when refused.
        metadata: string metadata to keep with the file (pre-create only); names are
            1-64 of ``a-z``, ``0-9`` and ``-``.
    """

    reject: bool = False
    status: int | None = None
    message: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


HookCallable = Callable[[HookRequest], "HookResponse | Awaitable[HookResponse | None] | None"]
"""A Python hook: gets the request, returns ``None`` or a :class:`HookResponse`."""


def sign(body: bytes, secret: str) -> str:
    """The signature header value of ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(body: bytes, secret: str, signature: str | None) -> bool:
    """Whether ``signature`` (the :data:`SIGNATURE_HEADER` value) signs ``body``.

    For hook receivers; compares in constant time. Check the raw body, before parsing.
    """
    if not signature:
        return False
    return hmac.compare_digest(sign(body, secret).encode(), signature.strip().encode())


def _printable(text: str) -> str:
    text = text[:_MAX_MESSAGE]
    return "".join(c if c.isprintable() else " " for c in text).strip()


def _message_of(body: object) -> str | None:
    """The client message in tusd's ``HTTPResponse.Body``: its ``message`` or ``error``."""
    if not isinstance(body, str) or not body.strip():
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return _printable(body)
    if isinstance(data, dict):
        for key in ("message", "error"):
            if isinstance(data.get(key), str):
                return _printable(data[key])
    return _printable(body)


def parse_answer(hook: str, body: bytes) -> HookResponse:
    """A webhook's answer (tusd's hook response JSON) as a :class:`HookResponse`.

    Raises :class:`HookFailed` for anything that is not such a document.
    """
    if not body.strip():
        return HookResponse()
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        msg = f"the {hook} hook answered something that is not a JSON object"
        raise HookFailed(msg)
    http = data.get("HTTPResponse") or {}
    change = data.get("ChangeFileInfo") or {}
    metadata = change.get("MetaData") if isinstance(change, dict) else None
    if not isinstance(http, dict) or not isinstance(metadata, dict | None):
        msg = f"the {hook} hook answered a malformed hook response"
        raise HookFailed(msg)
    status = http.get("StatusCode")
    return HookResponse(
        reject=data.get("RejectUpload") is True,
        status=status if isinstance(status, int) else None,
        message=_message_of(http.get("Body")),
        metadata=metadata or {},
    )


def _ids(request: HookRequest) -> dict[str, Any]:
    """Log-record fields naming the request (a hook may run outside its context)."""
    return {"request_id": request.http.request_id, "hook": request.hook}


def _judged(hook: str, answer: HookResponse) -> HookResponse:
    """``answer`` with its metadata checked; raises :class:`HookRejected` if it refuses."""
    if answer.reject:
        status = answer.status if answer.status and 400 <= answer.status < 600 else 400
        message = answer.message or f"the upload was refused by the {hook} hook"
        raise HookRejected(message, status=status)
    try:
        metadata = validate_metadata(None, None, answer.metadata)
    except InvalidMetadata as exc:
        msg = f"the {hook} hook gave unusable metadata: {exc.message}"
        raise HookFailed(msg) from None
    return HookResponse(metadata=metadata)


class Webhook:
    """Sends hook requests to one URL over HTTP (see the module docstring).

    Args:
        url: where to ``POST`` (``http://`` or ``https://``).
        secret: signs each body (:data:`SIGNATURE_HEADER`), or ``None``.
        timeout: seconds one delivery attempt may take, all of it.
        retries: extra attempts for a non-blocking hook after a network error or 5xx.
        backoff: seconds before the first retry; doubled each time (30 s at most).
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        import httpx

        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        # No proxies from the environment: a hook endpoint is the operator's own.
        self._client = httpx.AsyncClient(timeout=timeout, trust_env=False)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.aclose()

    async def deliver(self, request: HookRequest, *, blocking: bool) -> HookResponse:
        """Send ``request``; its answer. Raises :class:`HookFailed` when it cannot."""
        import httpx

        body = json.dumps(request.to_json(), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "spoolup-hooks",
            "X-Spoolup-Hook": request.hook,
        }
        if request.http.request_id:
            headers["X-Request-ID"] = request.http.request_id
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(body, self.secret)
        attempts = 1 if blocking else 1 + self.retries
        problem = ""
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(min(self.backoff * 2 ** (attempt - 1), _MAX_BACKOFF))
            try:
                async with asyncio.timeout(self.timeout):
                    status, answer = await self._post(body, headers)
            except (httpx.HTTPError, TimeoutError, OSError) as exc:
                problem = f"could not be reached ({type(exc).__name__})"
                continue
            if 200 <= status < 300:
                return parse_answer(request.hook, answer)
            problem = f"answered HTTP {status}"
            if status < 500:
                break  # the hook endpoint said the request is wrong: trying again won't help
        msg = f"the {request.hook} hook {problem}"
        raise HookFailed(msg)

    async def _post(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        async with self._client.stream("POST", self.url, content=body, headers=headers) as resp:
            answer = b""
            async for chunk in resp.aiter_bytes():
                answer += chunk
                if len(answer) > _MAX_ANSWER:
                    msg = f"the hook answer is longer than {_MAX_ANSWER} bytes"
                    raise HookFailed(msg)
            return resp.status_code, answer


class HookDispatcher:
    """Runs the hooks of one server: Python callables first, then the webhook.

    Blocking hooks are awaited (:meth:`call`); the others run in the background
    (:meth:`fire`), owned here and finished or cancelled by :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        callables: Mapping[str, HookCallable] | None = None,
        webhook: Webhook | None = None,
        metrics: Metrics | None = None,
        timeout: float = 5.0,
        progress_interval: float = 1.0,
    ) -> None:
        unknown = set(callables or {}) - set(HOOKS)
        if unknown:
            msg = f"unknown hook names {sorted(unknown)}: use {', '.join(HOOKS)}"
            raise ValueError(msg)
        self.callables = dict(callables or {})
        self.webhook = webhook
        self.metrics = metrics
        self.timeout = timeout
        self.progress_interval = progress_interval
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_config(
        cls,
        config: ServerConfig,
        callables: Mapping[str, HookCallable] | None = None,
        metrics: Metrics | None = None,
    ) -> HookDispatcher:
        """The dispatcher of ``callables`` and the webhook ``config.hook_url`` names."""
        webhook = None
        if config.hook_url is not None:
            webhook = Webhook(
                config.hook_url,
                secret=config.hook_secret,
                timeout=config.hook_timeout,
                retries=config.hook_retries,
            )
        return cls(
            callables=callables,
            webhook=webhook,
            metrics=metrics,
            timeout=config.hook_timeout,
            progress_interval=config.hook_progress_interval,
        )

    def wants(self, hook: str) -> bool:
        """Whether anything listens to ``hook``."""
        return self.webhook is not None or hook in self.callables

    @property
    def active(self) -> bool:
        """Whether any hook is set at all."""
        return self.webhook is not None or bool(self.callables)

    async def call(self, request: HookRequest) -> HookResponse:
        """Run a blocking hook; the merged answer. Raises HookRejected or HookFailed."""
        start = time.perf_counter()
        outcome = "failed"
        try:
            answer = _judged(request.hook, await self._run(request, blocking=True))
            outcome = "ok"
            return answer
        except HookRejected:
            outcome = "rejected"
            raise
        except HookFailed as exc:
            logger.warning("%s", exc.message, extra=_ids(request))
            raise
        finally:
            if self.metrics is not None:
                self.metrics.hook_call(request.hook, outcome, time.perf_counter() - start)

    def fire(self, request: HookRequest) -> None:
        """Start a non-blocking hook in the background (on the event loop's thread)."""
        if not self.wants(request.hook):
            return
        if len(self._tasks) >= _MAX_PENDING:
            logger.warning(
                "%s hook dropped: %d deliveries already pending", request.hook, _MAX_PENDING
            )
            if self.metrics is not None:
                self.metrics.hook_call(request.hook, "dropped")
            return
        task = asyncio.get_running_loop().create_task(self._background(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _background(self, request: HookRequest) -> None:
        start = time.perf_counter()
        outcome = "ok"
        try:
            await self._run(request, blocking=False)
        except HookFailed as exc:
            outcome = "failed"
            logger.warning("%s", exc.message, extra=_ids(request))
        except Exception:
            outcome = "failed"
            logger.exception("the %s hook failed", request.hook, extra=_ids(request))
        finally:
            if self.metrics is not None:
                self.metrics.hook_call(request.hook, outcome, time.perf_counter() - start)

    async def _run(self, request: HookRequest, *, blocking: bool) -> HookResponse:
        metadata: dict[str, str] = {}
        function = self.callables.get(request.hook)
        if function is not None:
            answer = await self._call_python(function, request)
            if answer.reject:
                return answer
            metadata.update(answer.metadata)
        if self.webhook is not None:
            answer = await self.webhook.deliver(request, blocking=blocking)
            if answer.reject:
                return answer
            metadata.update(answer.metadata)
        return HookResponse(metadata=metadata)

    async def _call_python(self, function: HookCallable, request: HookRequest) -> HookResponse:
        try:
            async with asyncio.timeout(self.timeout):
                if inspect.iscoroutinefunction(function):
                    answer = await function(request)
                else:
                    answer = await asyncio.to_thread(function, request)
                    if inspect.isawaitable(answer):
                        answer = await answer
        except UploadError:
            raise
        except TimeoutError:
            msg = f"the {request.hook} hook did not answer within {self.timeout:g} s"
            raise HookFailed(msg) from None
        except Exception as exc:
            logger.exception("the %s hook raised", request.hook, extra=_ids(request))
            msg = f"the {request.hook} hook failed"
            raise HookFailed(msg) from exc
        if answer is None:
            return HookResponse()
        if not isinstance(answer, HookResponse):
            msg = f"the {request.hook} hook returned {type(answer).__name__}, not a HookResponse"
            raise HookFailed(msg)
        return answer

    async def aclose(self, grace: float = 5.0) -> None:
        """Give background deliveries ``grace`` seconds to end, cancel the rest, close."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self.webhook is not None:
            await self.webhook.aclose()


class HookHandler(UploadHandler):
    """Runs the hooks of each file of one request in the handler chain (put it first).

    ``new_file`` runs pre-create (the worker thread waits for it) and gives the file
    its id; post-create and post-receive are started in the background. The storing
    handler takes the id and the hook's metadata from :meth:`key_func` and
    :meth:`metadata_func`. Pre-finish and post-finish are the route's to run, once
    every file is stored (:meth:`files` lists them).
    """

    def __init__(
        self,
        dispatcher: HookDispatcher,
        *,
        way: str,
        http: HttpInfo,
        loop: asyncio.AbstractEventLoop,
        new_id: Callable[[], str],
        key_of: Callable[[str], str],
    ) -> None:
        self.dispatcher = dispatcher
        self.way = way
        self.http = http
        self.loop = loop
        self.new_id = new_id
        self.key_of = key_of
        self.metadata: dict[str, dict[str, str]] = {}
        self._id: str | None = None
        self._file_meta: dict[str, str] = {}
        self._size: int | None = None
        self._progress = dispatcher.wants("post-receive")
        self._last = 0.0

    def _request(self, hook: str, offset: int = 0) -> HookRequest:
        return HookRequest(
            hook=hook,
            way=self.way,
            upload_id=self._id,
            size=self._size,
            offset=offset,
            metadata=self._file_meta,
            http=self.http,
            storage_key=self.key_of(self._id) if self._id else None,
        )

    def new_file(self, info: FileInfo) -> None:
        """Run pre-create; the file gets its id and any metadata the hook adds."""
        self._id = None
        self._size = info.content_length if self.way == "put" else None
        meta = {"filename": info.filename, "filetype": info.content_type or ""}
        if self.way == "multipart":
            meta["fieldname"] = info.field_name
        self._file_meta = meta
        if self.dispatcher.wants("pre-create"):
            future = asyncio.run_coroutine_threadsafe(
                self.dispatcher.call(self._request("pre-create")), self.loop
            )
            answer = future.result()
            extra = dict(answer.metadata)
        else:
            extra = {}
        self._id = self.new_id()
        self.metadata[self._id] = extra
        self._file_meta = {**meta, **extra}
        self._last = time.monotonic()
        self.loop.call_soon_threadsafe(self.dispatcher.fire, self._request("post-create"))

    def key_func(self, info: FileInfo) -> str:
        """The storage key of the file :meth:`new_file` just named."""
        assert self._id is not None
        return self.key_of(self._id)

    def metadata_func(self, info: FileInfo) -> Mapping[str, str]:
        """The metadata pre-create added to the current file."""
        assert self._id is not None
        return self.metadata[self._id]

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        """Pass the chunk on; now and then, start a post-receive."""
        if self._progress:
            now = time.monotonic()
            if now - self._last >= self.dispatcher.progress_interval:
                self._last = now
                request = self._request("post-receive", offset + len(data))
                self.loop.call_soon_threadsafe(self.dispatcher.fire, request)
        return data
