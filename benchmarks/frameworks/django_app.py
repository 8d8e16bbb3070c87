"""Django: ``request.FILES`` (Django's parser) against spoolup's middleware, WSGI and ASGI.

The same views serve all four apps; what differs is the settings (``UploadMiddleware``
or not) and the handler (Django's WSGI handler, Django's ASGI handler, or spoolup's
``get_asgi_application``). Each factory configures Django in the fresh server process.

- native: Django's upload handlers (in memory up to 2.5 MB, else a temp file; under
  ASGI the whole body is first spooled by the handler), then the file copied to its
  place the way Django's documentation shows (``for chunk in f.chunks()``), hashing.
- spoolup: ``UploadMiddleware`` with ``SPOOLUP["HANDLERS"] = [HashingHandler,
  SpooledFileHandler]``; the file is stored with ``FileSystemStorage.save`` (the
  Django way), which moves spoolup's temp file by rename.

``POST /limited``: Django has no body-size setting for files (``DATA_UPLOAD_MAX_MEMORY_SIZE``
counts non-file data only), so the native view compares ``Content-Length`` itself; the
spoolup view has ``@upload_options(limits={"max_body_size": LIMIT})``.
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks.frameworks.common import IMAGE_LIMIT, LIMIT, copy_hashing, dest_path, image_size

MIDDLEWARE = "spoolup.integrations.django.UploadMiddleware"


def _configure(*, native: bool) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=[],
        MIDDLEWARE=[] if native else [MIDDLEWARE],
        FILE_UPLOAD_TEMP_DIR=os.environ.get("TMPDIR"),
        SPOOLUP={
            "HANDLERS": ["spoolup.handlers.HashingHandler", "spoolup.handlers.SpooledFileHandler"]
        },
    )
    django.setup()


def native_wsgi() -> Any:
    """Django's own upload handling under its WSGI handler."""
    _configure(native=True)
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def spoolup_wsgi() -> Any:
    """``UploadMiddleware`` under Django's WSGI handler."""
    _configure(native=False)
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def native_asgi() -> Any:
    """Django's own upload handling under its ASGI handler (the body spooled first)."""
    _configure(native=True)
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def spoolup_asgi() -> Any:
    """``UploadMiddleware`` under spoolup's ``get_asgi_application`` (the body streamed)."""
    _configure(native=False)
    from spoolup.integrations.django import get_asgi_application

    return get_asgi_application()


def backup(request: Any) -> Any:
    from django.core.files.storage import FileSystemStorage
    from django.http import JsonResponse

    upload = request.FILES["file"]
    spooled = getattr(upload, "spoolup", None)
    if spooled is None:
        digest = copy_hashing(upload, dest_path("django"))
    else:
        dest = dest_path("django-spoolup")
        FileSystemStorage(location=dest.parent).save(dest.name, upload)
        digest = spooled.hashes["sha256"]
    return JsonResponse({"sha256": digest}, status=201)


def image(request: Any) -> Any:
    from django.http import HttpResponse, JsonResponse

    upload = request.FILES["image"]
    if upload.size > IMAGE_LIMIT:
        return HttpResponse("image too large", status=413)
    width, height = image_size(upload.read())
    return JsonResponse({"width": width, "height": height})


def limited(request: Any) -> Any:
    from django.http import HttpResponse, JsonResponse

    if _native() and int(request.META.get("CONTENT_LENGTH") or 0) > LIMIT:
        return HttpResponse("too large", status=413)
    return JsonResponse({"files": len(request.FILES)})


def _native() -> bool:
    from django.conf import settings

    return MIDDLEWARE not in settings.MIDDLEWARE


def __getattr__(name: str) -> Any:
    # Django reads ``urlpatterns`` from ROOT_URLCONF (this module) once it is set up.
    if name == "urlpatterns":
        from django.urls import path
        from django.views.decorators.csrf import csrf_exempt

        from spoolup.handlers import MemoryFileHandler
        from spoolup.integrations.django import upload_options

        image_options = upload_options(
            limits={"max_file_size": IMAGE_LIMIT}, handlers=[MemoryFileHandler]
        )
        limited_options = upload_options(limits={"max_body_size": LIMIT})
        return [
            path("backup", csrf_exempt(backup)),
            path("image", csrf_exempt(image_options(image))),
            path("limited", csrf_exempt(limited_options(limited))),
        ]
    raise AttributeError(name)
