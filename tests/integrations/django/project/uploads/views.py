"""The views of the test project: ordinary Django, unchanged by spoolup but for options.

``upload_options`` only narrows limits or picks handlers; without spoolup's middleware
(``SPOOLUP_DJANGO_NATIVE=1``) the same views run on Django's own upload handling.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from django import forms
from django.core.files.storage import default_storage
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404
from django.views.generic.edit import CreateView
from PIL import Image

from spoolup import Limits
from spoolup.handlers import HandlerSpec, HashingHandler, MemoryFileHandler
from spoolup.integrations.django import (
    DjangoStorageHandler,
    parse_form,
    receive_file,
    upload_options,
)
from tests.integrations.django.project.uploads.models import Document

MiB = 1024 * 1024
IMAGE_LIMIT = 2 * MiB

_BACKUP_HANDLERS: list[HandlerSpec] = [
    HashingHandler,
    functools.partial(DjangoStorageHandler, upload_to="backups/"),
]


def csrf(request: HttpRequest) -> HttpResponse:
    """Sets the CSRF cookie; the token is the body."""
    return HttpResponse(get_token(request), content_type="text/plain")


@upload_options(
    limits={"max_file_size": IMAGE_LIMIT, "max_body_size": IMAGE_LIMIT + 64 * 1024},
    handlers=[MemoryFileHandler],
)
def image(request: HttpRequest) -> HttpResponse:
    """Is the picture all white? Read in memory, never written to disk."""
    upload = request.FILES["image"]
    if upload.size > IMAGE_LIMIT:  # what a Django user checks without spoolup
        return JsonResponse({"error": "too large"}, status=413)
    with Image.open(upload) as picture:
        rgb = picture.convert("RGB")
        answer = {
            "width": picture.width,
            "height": picture.height,
            "format": picture.format,
            "all_white": rgb.getextrema() == ((255, 255),) * 3,
        }
    spooled = getattr(upload, "spoolup", None)
    answer["type"] = type(upload).__name__
    answer["in_memory"] = spooled.in_memory if spooled is not None else None
    return JsonResponse(answer)


def _backup_answer(upload: Any) -> JsonResponse:
    spooled = getattr(upload, "spoolup", None)
    if spooled is not None:
        name, digest = upload.name, spooled.hashes["sha256"]
    else:  # Django's own handling: hash it, then store it (a rename from its temp file)
        hasher = hashlib.sha256()
        for chunk in upload.chunks(1024 * 1024):
            hasher.update(chunk)
        digest = hasher.hexdigest()
        name = default_storage.save(f"backups/{upload.name}", upload)
    return JsonResponse({"name": name, "size": upload.size, "sha256": digest}, status=201)


@upload_options(handlers=_BACKUP_HANDLERS)
def backup(request: HttpRequest) -> HttpResponse:
    """A large file kept in storage, with its sha256."""
    return _backup_answer(request.FILES["backup"])


@upload_options(handlers=_BACKUP_HANDLERS)
async def async_backup(request: HttpRequest) -> HttpResponse:
    """The same, from an async view."""
    return _backup_answer(request.FILES["backup"])


async def async_body(request: HttpRequest) -> HttpResponse:
    """An async view reading a JSON body, as Django allows."""
    return JsonResponse({"length": len(request.body)})


class DocumentForm(forms.ModelForm):  # type: ignore[misc]
    class Meta:
        model = Document
        fields = ("title", "file")


class DocumentCreate(CreateView):  # type: ignore[misc]
    """A ModelForm saving to a FileField, the generic way."""

    model = Document
    form_class = DocumentForm

    def get_success_url(self) -> str:
        return f"/docs/{self.object.pk}/"


def document(request: HttpRequest, pk: int) -> HttpResponse:
    doc = get_object_or_404(Document, pk=pk)
    return JsonResponse({"title": doc.title, "name": doc.file.name, "path": doc.file.path})


def echo(request: HttpRequest) -> HttpResponse:
    """What request.POST and request.FILES hold."""
    files = {
        name: [
            [f.name, f.size, type(f).__name__, getattr(f, "spoolup", None) is not None]
            for f in request.FILES.getlist(name)
        ]
        for name in request.FILES
    }
    return JsonResponse({"fields": dict(request.POST.lists()), "files": files})


def raw(request: HttpRequest) -> HttpResponse:
    """A raw PUT body as one file."""
    upload = receive_file(request, filename=request.headers.get("X-Filename", "upload"))
    assert upload is not None
    with upload:
        digest = hashlib.sha256(upload.read()).hexdigest()
        return JsonResponse({"size": upload.size, "sha256": digest, "name": upload.filename})


@upload_options(limits={"max_file_size": 1000})
def spoolup_form(request: HttpRequest) -> HttpResponse:
    """A view that wants a spoolup Form (after CsrfViewMiddleware read request.POST)."""
    with parse_form(request) as form:
        files = [[f.filename, f.size, f.in_memory] for _, f in form.files.multi_items()]
        return JsonResponse({"fields": dict(form.fields), "files": files})


def consumed(request: HttpRequest) -> HttpResponse:
    """Asks spoolup for the form with its own limits after the body was parsed."""
    with parse_form(request, limits=Limits(max_file_size=10)) as form:
        return JsonResponse({"fields": len(form.fields)})
