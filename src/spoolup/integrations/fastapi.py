"""spoolup forms and files as FastAPI dependencies, documented in the OpenAPI schema.

::

    from typing import Annotated
    from fastapi import Depends, FastAPI
    from spoolup import Form, Limits
    from spoolup.integrations.fastapi import form
    from spoolup.integrations.starlette import install

    app = FastAPI()
    install(app)  # UploadError -> JSON {"error": ...} with its status; OpenAPI bodies

    avatar_form = form(limits=Limits(max_file_size=2_000_000), files=["image"])

    @app.post("/avatar")
    async def avatar(data: Annotated[Form, Depends(avatar_form)]):
        image = data.files["image"]
        ...

The form is closed (temp files removed) after the response is sent. FastAPI's own
limits apply: the route's ``max_body_size`` (a declared length over it is a 413 before
reading) and ``form_limits`` (``max_files``, ``max_fields``, ``max_part_size`` for one
text value) of the app, its routers and the route. A
body already read by a ``Form()``/``File()`` parameter or ``request.form()`` is a
``RuntimeError`` at once. With :func:`spoolup.integrations.starlette.install`, the
route's OpenAPI operation shows a ``multipart/form-data`` body whose ``files`` are
marked exactly as FastAPI marks ``UploadFile`` parameters (Swagger UI offers a file
picker) and the 400/413/415 answers.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI, UploadFile
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from starlette.requests import Request

from spoolup.files import UploadedFile
from spoolup.form import Form
from spoolup.handlers import HandlerSpec
from spoolup.headers import parse_options_header
from spoolup.integrations import starlette
from spoolup.limits import Limits

__all__ = [
    "FormDependency",
    "UploadFileDependency",
    "document",
    "form",
    "form_limits",
    "upload_file",
]

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
_ERRORS = {
    "400": "Malformed request body, or the client left before it ended",
    "413": "A size or count limit was crossed (the message names it)",
    "415": "Not a form, or a file of a type not allowed",
}


@functools.cache
def _file_schema() -> dict[str, Any]:
    # Exactly what FastAPI writes for an ``UploadFile`` parameter in this version
    # (``format: binary`` before 0.115-ish, ``contentMediaType`` since), so Swagger UI
    # offers the same file picker.
    schema: dict[str, Any] = TypeAdapter(UploadFile).json_schema(mode="validation")
    return schema


# FastAPI's form_limits (app, router and route), by the Limits field each one bounds.
_FORM_LIMITS = {
    "max_files": "max_files",
    "max_fields": "max_fields",
    "max_part_size": "max_field_size",
}


def form_limits(request: Request, limits: Limits | None) -> Limits:
    """``limits`` (or the defaults) lowered to FastAPI's ``form_limits`` for the route.

    FastAPI keeps the app's and routers' ``form_limits`` in the request scope and the
    route's own on the route; the route's win, as in FastAPI's own form parsing.
    """
    limits = Limits() if limits is None else limits
    fastapi_scope = request.scope.get("fastapi")
    inherited = fastapi_scope.get("form_limits") if isinstance(fastapi_scope, dict) else None
    own = getattr(request.scope.get("route"), "form_limits", None)
    settings = {**(inherited or {}), **(own or {})}
    changes = {
        field: min(getattr(limits, field), settings[name])
        for name, field in _FORM_LIMITS.items()
        if isinstance(settings.get(name), int)
    }
    return dataclasses.replace(limits, **changes) if changes else limits


class FormDependency:
    """A FastAPI dependency giving the request's spoolup :class:`~spoolup.Form`.

    Made by :func:`form`; FastAPI calls it once per request and closes the form after
    the response.
    """

    def __init__(
        self,
        limits: Limits | None,
        handlers: Iterable[HandlerSpec] | None,
        files: Sequence[str],
        fields: Sequence[str],
    ) -> None:
        self.limits = limits
        self.handlers = None if handlers is None else list(handlers)
        self.files = list(files)
        self.fields = list(fields)

    async def __call__(self, request: Request) -> AsyncIterator[Form]:
        """Parse the body, yield the form, close it when FastAPI is done with it."""
        limits = form_limits(request, self.limits)
        parsed = await starlette.parse_form(request, limits=limits, handlers=self.handlers)
        try:
            yield parsed
        finally:
            await parsed.aclose()

    def request_body(self) -> dict[str, Any]:
        """The OpenAPI ``requestBody`` of a route taking this form."""
        properties: dict[str, Any] = {name: {"type": "string"} for name in self.fields}
        properties.update({name: dict(_file_schema()) for name in self.files})
        schema = {"type": "object", "properties": properties}
        content = {"multipart/form-data": {"schema": schema}}
        if not self.files:
            content["application/x-www-form-urlencoded"] = {"schema": schema}
        return {"required": True, "content": content}


def form(
    *,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
    files: Sequence[str] = (),
    fields: Sequence[str] = (),
) -> FormDependency:
    """A dependency for ``Annotated[Form, Depends(form(...))]``.

    ``limits`` and ``handlers`` are those of :func:`spoolup.parse_form` (factories are
    made afresh per request). ``files`` and ``fields`` name the form's file and text
    fields for the OpenAPI schema only; they do not restrict what is accepted.
    """
    return FormDependency(limits, handlers, files, fields)


class UploadFileDependency:
    """A FastAPI dependency giving the raw request body as one :class:`UploadedFile`.

    Made by :func:`upload_file`; the file is closed after the response.
    """

    def __init__(
        self,
        filename: str | Callable[[Request], str] | None,
        limits: Limits | None,
        handlers: Iterable[HandlerSpec] | None,
    ) -> None:
        self.filename = filename
        self.limits = limits
        self.handlers = None if handlers is None else list(handlers)

    def _filename(self, request: Request) -> str:
        if isinstance(self.filename, str):
            return self.filename
        if self.filename is not None:
            return self.filename(request)
        disposition = request.headers.get("content-disposition")
        if disposition:
            _, params = parse_options_header(disposition)
            if params.get("filename"):
                return params["filename"]
        name = request.path_params.get("filename")
        if isinstance(name, str):
            return name
        return unquote(request.url.path.rstrip("/").rpartition("/")[2])

    async def __call__(self, request: Request) -> AsyncIterator[UploadedFile | None]:
        """Receive the body, yield the file (``None`` if a handler dropped it), close it."""
        file = await starlette.receive_file(
            request,
            filename=self._filename(request),
            limits=self.limits,
            handlers=self.handlers,
        )
        try:
            yield file
        finally:
            if file is not None:
                await file.aclose()

    def request_body(self) -> dict[str, Any]:
        """The OpenAPI ``requestBody`` of a route taking a raw file."""
        content = {"application/octet-stream": {"schema": dict(_file_schema())}}
        return {"required": True, "content": content}


def upload_file(
    *,
    filename: str | Callable[[Request], str] | None = None,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
) -> UploadFileDependency:
    """A dependency for ``Annotated[UploadedFile, Depends(upload_file(...))]``: a raw body.

    The file's name is ``filename`` (a string, or a function of the request); by
    default the ``filename`` of a ``Content-Disposition`` header, else the route's
    ``filename`` path parameter, else the last segment of the URL path.
    """
    return UploadFileDependency(filename, limits, handlers)


def _spoolup_body(route: APIRoute) -> FormDependency | UploadFileDependency | None:
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        if isinstance(dependant.call, (FormDependency, UploadFileDependency)):
            return dependant.call
        pending.extend(dependant.dependencies)
    return None


def document(app: FastAPI) -> None:
    """Add spoolup request bodies and their error answers to ``app``'s OpenAPI schema.

    Called by :func:`spoolup.integrations.starlette.install`; wraps ``app.openapi``
    the way FastAPI documents for extending the schema.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        paths = schema.get("paths", {})
        for route in app.routes:
            if not isinstance(route, APIRoute):
                continue
            body = _spoolup_body(route)
            if body is None:
                continue
            for method in route.methods or ():
                operation = paths.get(route.path_format, {}).get(method.lower())
                if operation is None:
                    continue
                operation.setdefault("requestBody", body.request_body())
                responses = operation.setdefault("responses", {})
                for status, description in _ERRORS.items():
                    responses.setdefault(
                        status,
                        {
                            "description": description,
                            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
                        },
                    )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
