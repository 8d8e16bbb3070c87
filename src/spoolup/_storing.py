"""The skeleton of a handler that streams each file into a writer and keeps it.

:class:`StoringHandler` is shared by :class:`spoolup.storage.StorageHandler` (a
spoolup backend) and the Django integration's ``DjangoStorageHandler`` (a Django
storage): both take every file (``StopFutureHandlers``), write its chunks as they
come, commit the writer when the part ends, abort it when the file is dropped, and
remove what the request stored when the upload fails. A subclass says only how to
open a writer, what a committed writer becomes, and how to remove a stored file.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from spoolup.files import FileInfo, UploadedFile
from spoolup.handlers import StopFutureHandlers, UploadContext, UploadHandler

__all__ = ["FileWriter", "StoringHandler"]

Committed = TypeVar("Committed")
Committed_co = TypeVar("Committed_co", covariant=True)


class FileWriter(Protocol[Committed_co]):
    """Where one file's bytes go: written in order, then committed or aborted."""

    def write(self, data: bytes) -> None:
        """Append ``data``."""

    def commit(self) -> Committed_co:
        """Put the file in place; returns what identifies it."""

    def abort(self) -> None:
        """Drop what was written; nothing is left behind."""


class StoringHandler(UploadHandler, Generic[Committed]):
    """Takes every file part into a writer; removes the request's files on failure.

    Subclasses implement :meth:`open_writer`, :meth:`stored_file` and
    :meth:`remove`. With ``keep_on_error`` the files committed before a failure stay.
    """

    def __init__(self, *, keep_on_error: bool = False) -> None:
        self.keep_on_error = keep_on_error
        self._writer: FileWriter[Committed] | None = None
        self._info: FileInfo | None = None
        self._committed: list[Committed] = []

    def open_writer(self, info: FileInfo) -> FileWriter[Committed]:
        """A writer for the file described by ``info``."""
        raise NotImplementedError

    def stored_file(self, info: FileInfo, committed: Committed, size: int) -> UploadedFile:
        """The :class:`UploadedFile` the form gets for a committed file."""
        raise NotImplementedError

    def remove(self, committed: Committed) -> None:
        """Delete a file this request stored (the upload failed after it)."""
        raise NotImplementedError

    def upload_started(self, context: UploadContext) -> None:
        """Forget the previous request."""
        self._abort()
        self._committed = []

    def new_file(self, info: FileInfo) -> None:
        """Open a writer for the file; later handlers see nothing of it."""
        self._abort()
        self._writer = self.open_writer(info)
        self._info = info
        raise StopFutureHandlers

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        """Write the chunk; keeps it (returns None)."""
        assert self._writer is not None
        self._writer.write(data)
        return None

    def file_complete(self, size: int) -> UploadedFile | None:
        """Commit the writer and return the stored file."""
        writer, info = self._writer, self._info
        assert writer is not None
        assert info is not None
        self._writer = None
        committed = writer.commit()
        self._committed.append(committed)
        return self.stored_file(info, committed, size)

    def file_skipped(self) -> None:
        """Abort the file being written."""
        self._abort()

    def upload_complete(self) -> None:
        """Nothing is held once the body is parsed; the stored files stay."""
        # The committed files are remembered until the next upload_started: a handler
        # after this one may still fail its upload_complete, and the upload is then
        # interrupted after all.
        self._abort()

    def upload_interrupted(self) -> None:
        """Abort the file in progress and, unless ``keep_on_error``, remove this request's."""
        self._abort()
        committed, self._committed = self._committed, []
        if self.keep_on_error:
            return
        error: Exception | None = None
        for item in committed:
            try:
                self.remove(item)
            except Exception as exc:  # remove the others all the same
                error = error or exc
        if error is not None:
            raise error

    def _abort(self) -> None:
        writer, self._writer = self._writer, None
        self._info = None
        if writer is not None:
            writer.abort()
