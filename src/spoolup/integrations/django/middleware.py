"""``UploadMiddleware``: ``request.POST`` and ``request.FILES`` filled by spoolup.

::

    MIDDLEWARE = [
        ...,
        "spoolup.integrations.django.UploadMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        ...,
    ]

Nothing else changes: the first use of ``request.POST`` or ``request.FILES`` (by
``CsrfViewMiddleware``, a form, a view, the admin, DRF) parses the body with spoolup,
under the view's :func:`upload_options` or the settings. An upload refused (a limit:
413; malformed: 400; a type not allowed: 415) is answered with its status, as JSON
``{"error": ...}`` when the client accepts ``application/json``, else a short text,
and logged on ``django.security.UploadRefused``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse

from spoolup.errors import UploadError

from .handler import check_file_upload_handlers
from .request import UploadRefused, install

__all__ = ["UploadMiddleware", "error_response"]

_security_log = logging.getLogger("django.security.UploadRefused")


def error_response(request: HttpRequest, error: UploadError) -> HttpResponse:
    """The answer to ``error``: its status, JSON if the client accepts it, else text."""
    accept = request.headers.get("Accept", "")
    if "application/json" in accept:
        return JsonResponse({"error": error.message}, status=error.status)
    response = HttpResponse(status=error.status, content_type="text/plain; charset=utf-8")
    response.content = f"{error.status} {response.reason_phrase}: {error.message}\n"
    return response


class UploadMiddleware:
    """Makes ``request.POST``/``request.FILES`` spoolup's; place it before ``CsrfViewMiddleware``.

    Sync and async: under :func:`~spoolup.integrations.django.get_asgi_application`
    the body streams to the parser. At start-up it refuses a spoolup handler put in
    ``FILE_UPLOAD_HANDLERS`` (Django's parser cannot drive it).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        check_file_upload_handlers()
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        install(request)
        return self._answer(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        install(request)
        get_response: Callable[[HttpRequest], Awaitable[HttpResponse]] = self.get_response
        return self._answer(request, await get_response(request))

    def _answer(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        # An UploadRefused raised outside the view (CsrfViewMiddleware reading
        # request.POST) was answered by Django as a SuspiciousOperation, a 400, and
        # logged: give the answer its own status.
        error: UploadRefused | None = getattr(request, "_spoolup_error", None)
        if error is not None and response.status_code == 400:
            return error_response(request, error)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """An ``UploadError`` raised by the view (``parse_form``, ``request.FILES``)."""
        if not isinstance(exception, UploadError):
            return None
        if not isinstance(exception, UploadRefused):
            # Seen again if the answer is re-rendered: empty forms, never a second parse.
            request._spoolup_error = UploadRefused(exception)
            request._spoolup_reported = True
        _security_log.error(
            "%s", exception, extra={"status_code": exception.status, "request": request}
        )
        return error_response(request, exception)
