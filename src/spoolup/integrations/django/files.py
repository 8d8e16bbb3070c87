"""Django's own file types over spoolup's files: what ``request.FILES`` holds.

Each is a ``django.core.files.uploadedfile.UploadedFile`` subclass, so forms, model
fields and storages take it as they take Django's, and the spoolup file rides along
at ``.spoolup`` (``hashes``, ``in_memory``, ``raw_filename``, ``path``...). Closing
one closes the spoolup file (a temp file is removed); Django closes every file of
``request.FILES`` when the response is done.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.files.uploadedfile import (
    InMemoryUploadedFile,
    TemporaryUploadedFile,
)
from django.core.files.uploadedfile import (
    UploadedFile as DjangoUploadedFile,
)

from spoolup.files import UploadedFile
from spoolup.headers import parse_options_header

__all__ = [
    "SpoolupInMemoryUploadedFile",
    "SpoolupStoredUploadedFile",
    "SpoolupTemporaryUploadedFile",
    "django_file",
]


def _content_type(file: UploadedFile) -> tuple[str, dict[str, str]]:
    """The part's type and its parameters, as Django gives them (``""`` if none)."""
    for name, value in file.headers:
        if name == "content-type":
            mime, params = parse_options_header(value)
            return mime, params
    return file.content_type or "", {}


def _django_args(file: UploadedFile) -> dict[str, Any]:
    mime, params = _content_type(file)
    return {
        "name": file.filename,
        "content_type": mime,
        "size": file.size,
        "charset": file.charset,
        "content_type_extra": params,
    }


class SpoolupInMemoryUploadedFile(InMemoryUploadedFile):  # type: ignore[misc]
    """A file held in memory: Django's ``InMemoryUploadedFile``, never on disk."""

    def __init__(self, file: UploadedFile) -> None:
        args = _django_args(file)
        super().__init__(
            file.file,
            file.field_name,
            args["name"],
            args["content_type"],
            args["size"],
            args["charset"],
            args["content_type_extra"],
        )
        self.spoolup = file

    def close(self) -> None:
        """Free the memory (the spoolup file is closed)."""
        self.spoolup.close()


class SpoolupTemporaryUploadedFile(TemporaryUploadedFile):  # type: ignore[misc]
    """A file in a temp file: ``temporary_file_path()`` lets a storage move it by rename.

    ``FileSystemStorage`` (and so ``FieldFile.save``, ``ModelForm``) renames the temp
    file into ``MEDIA_ROOT`` when both are on one filesystem (``FILE_UPLOAD_TEMP_DIR``
    decides where temp files go): the bytes are written once.
    """

    def __init__(self, file: UploadedFile) -> None:
        # TemporaryUploadedFile.__init__ would make a temp file of its own: the
        # spoolup file is the temp file here.
        DjangoUploadedFile.__init__(self, file.file, **_django_args(file))
        self.field_name = file.field_name
        self.spoolup = file

    def temporary_file_path(self) -> str:
        """Where the bytes are on disk."""
        assert self.spoolup.path is not None
        return os.fspath(self.spoolup.path)

    def close(self) -> None:
        """Close and remove the temp file (unless a storage moved it away)."""
        self.spoolup.close()


class SpoolupStoredUploadedFile(DjangoUploadedFile):  # type: ignore[misc]
    """A file a handler kept elsewhere (a storage): read back from there.

    For a file written by :class:`~spoolup.integrations.django.DjangoStorageHandler`,
    ``name`` is its name in that storage (directories included): keep it in a
    ``FileField`` as a string (``Backup.objects.create(file=f.name)``) so that Django
    does not store the bytes a second time.
    """

    def __init__(self, file: UploadedFile) -> None:
        args = _django_args(file)
        stored_name = getattr(file, "name", None)
        super().__init__(file.file, **args)
        self.field_name = file.field_name
        self.spoolup = file
        if stored_name:
            self._name = stored_name

    @property
    def name(self) -> str | None:
        """The name in storage (Django's file types keep only a base name)."""
        name: str | None = self._name
        return name

    @name.setter
    def name(self, value: str | None) -> None:
        # Django's setter keeps only the base name; a stored name keeps its directories.
        self._name = value

    def close(self) -> None:
        """Close the reader; the stored object stays."""
        self.spoolup.close()


def django_file(file: UploadedFile) -> DjangoUploadedFile:
    """The Django file type that fits how ``file`` is held."""
    if file.in_memory:
        return SpoolupInMemoryUploadedFile(file)
    if file.path is not None:
        return SpoolupTemporaryUploadedFile(file)
    return SpoolupStoredUploadedFile(file)
