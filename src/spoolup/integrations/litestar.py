"""A spoolup :class:`~spoolup.Form` for Litestar handlers, through a plugin.

::

    from litestar import Litestar, post
    from litestar.di import NamedDependency
    from spoolup import Form, Limits
    from spoolup.integrations.litestar import SpoolupPlugin, upload_options

    @post("/avatar", opt=upload_options(limits=Limits(max_file_size=2_000_000)))
    async def avatar(form: NamedDependency[Form]) -> dict[str, int]:
        return {"size": form.files["image"].size}

    app = Litestar([avatar], plugins=[SpoolupPlugin()])

The plugin adds a ``form`` dependency (a handler names a ``form: NamedDependency[Form]``
parameter, Litestar's way since 2.23; a plain ``form: Form`` works too, with Litestar's
deprecation warning),
closed after the handler, and an exception handler that answers every
:class:`~spoolup.UploadError` with JSON ``{"error": ...}`` and its status. The route's
``request_max_body_size`` (Litestar's own, layered from app to handler; 10 MB unless
set) lowers ``Limits.max_body_size``: a declared length over it is a 413 before the
body is read; the app's ``multipart_form_part_limit`` bounds the parts. A body already
read (a ``data`` parameter, ``request.body()``, ``request.form()``, ``request.stream()``)
is a ``RuntimeError`` at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, Iterable
from typing import Any, cast

from litestar import Request, Response
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.plugins import InitPlugin
from litestar.utils.empty import value_or_default
from litestar.utils.scope.state import ScopeState

from spoolup import asgi
from spoolup.errors import TooManyParts, UploadError
from spoolup.form import Form
from spoolup.handlers import HandlerSpec
from spoolup.limits import Limits

__all__ = ["SpoolupPlugin", "provide_form", "request_limits", "upload_options"]

_OPT_KEY = "spoolup"


@dataclasses.dataclass(frozen=True)
class _Options:
    limits: Limits | None
    handlers: list[HandlerSpec] | None


def upload_options(
    *, limits: Limits | None = None, handlers: Iterable[HandlerSpec] | None = None
) -> dict[str, Any]:
    """A route handler's ``opt=``: spoolup ``limits`` and ``handlers`` for that route.

    Merge it into other options with ``opt={**upload_options(...), ...}``.
    """
    return {_OPT_KEY: _Options(limits, None if handlers is None else list(handlers))}


def request_limits(request: Request[Any, Any, Any], limits: Limits | None) -> Limits:
    """``limits`` (or the defaults) lowered to Litestar's settings for the request.

    The route's ``request_max_body_size`` bounds the body; the app's
    ``multipart_form_part_limit`` bounds the files and the fields (and their sum, checked
    once the form is read).
    """
    limits = Limits() if limits is None else limits
    changes: dict[str, int] = {}
    body = request.route_handler.resolve_request_max_body_size()
    if body is not None and body < limits.max_body_size:
        changes["max_body_size"] = body
    parts = request.app.multipart_form_part_limit
    changes["max_files"] = min(limits.max_files, parts)
    changes["max_fields"] = min(limits.max_fields, parts)
    return dataclasses.replace(limits, **changes)


def _check_unread(request: Request[Any, Any, Any]) -> None:
    state = ScopeState.from_scope(request.scope)
    reader = None
    if value_or_default(state.form, None) is not None:
        reader = "request.form() or a form `data` parameter"
    elif value_or_default(state.body, None) is not None:
        reader = "request.body() or a `data` parameter"
    elif not request.is_connected:
        reader = "request.stream()"
    if reader is not None:
        raise RuntimeError(
            f"the request body was already read by {reader}; spoolup reads the body "
            "itself, so nothing may read it before the `form` dependency"
        )


class SpoolupPlugin(InitPlugin):
    """Gives handlers a ``form`` dependency and maps ``UploadError`` to its status.

    ``limits`` and ``handlers`` are the app's defaults; :func:`upload_options` in a
    route's ``opt`` overrides them for that route.
    """

    def __init__(
        self, *, limits: Limits | None = None, handlers: Iterable[HandlerSpec] | None = None
    ) -> None:
        self.options = _Options(limits, None if handlers is None else list(handlers))

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Register the dependency, its type and the exception handler."""
        app_config.dependencies.setdefault("form", Provide(self.provide_form))
        app_config.signature_namespace.setdefault("Form", Form)
        app_config.exception_handlers.setdefault(UploadError, upload_error_response)
        return app_config

    async def provide_form(self, request: Request[Any, Any, Any]) -> AsyncGenerator[Form, None]:
        """Parse the request's form (the route's options first, then the plugin's)."""
        route: _Options | None = request.route_handler.opt.get(_OPT_KEY)
        limits = route.limits if route and route.limits else self.options.limits
        handlers = route.handlers if route and route.handlers else self.options.handlers
        parsed = await _parse(request, limits, handlers)
        try:
            yield parsed
        finally:
            await parsed.aclose()


async def provide_form(
    request: Request[Any, Any, Any],
    *,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
) -> AsyncGenerator[Form, None]:
    """Yield the request's spoolup form, parsed by :func:`spoolup.asgi.parse_form`; close it.

    A generator dependency for ``Provide`` when the plugin's is not wanted.
    """
    parsed = await _parse(request, limits, handlers)
    try:
        yield parsed
    finally:
        await parsed.aclose()


async def _parse(
    request: Request[Any, Any, Any], limits: Limits | None, handlers: Iterable[HandlerSpec] | None
) -> Form:
    _check_unread(request)
    parsed = await asgi.parse_form(
        cast(asgi.Scope, request.scope),
        cast(asgi.Receive, request.receive),
        limits=request_limits(request, limits),
        handlers=handlers,
    )
    parts = len(parsed.fields.multi_items()) + len(parsed.files.multi_items())
    if parts > request.app.multipart_form_part_limit:
        await parsed.aclose()
        raise TooManyParts.for_limit(
            "multipart_form_part_limit", request.app.multipart_form_part_limit, "form parts"
        )
    return parsed


def upload_error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """An :class:`~spoolup.UploadError` as JSON ``{"error": message}`` with its status."""
    assert isinstance(exc, UploadError)
    return Response({"error": exc.message}, status_code=exc.status)
