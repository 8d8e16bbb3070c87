"""The public surface of ``spoolup`` is deliberate: this test pins it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import spoolup

EXPECTED = [
    "FileTooLarge",
    "Form",
    "Limits",
    "MalformedRequest",
    "RequestTooLarge",
    "TooManyParts",
    "UnsupportedMediaType",
    "UploadAborted",
    "UploadError",
    "UploadHandler",
    "UploadedFile",
    "aparse_form",
    "areceive_file",
    "parse_form",
    "receive_file",
]


def test_all_is_pinned_and_sorted() -> None:
    assert spoolup.__all__ == EXPECTED
    assert sorted(spoolup.__all__) == spoolup.__all__


def test_every_name_in_all_exists_and_is_documented() -> None:
    for name in spoolup.__all__:
        obj = getattr(spoolup, name)
        assert obj.__doc__, name


def test_no_other_public_names() -> None:
    public = {n for n in vars(spoolup) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(spoolup, n)).__name__ == "module"}
    assert public - modules == set(EXPECTED)


# Every public submodule of the library, the tus package and the framework integrations:
# its __all__, exactly. The server and the CLI are applications of the library, not an
# API to import: they are checked by the rules below (an __all__ whose names exist and
# are documented) but not pinned.
SUBMODULES: dict[str, list[str]] = {
    "spoolup.asgi": [
        "FormRequest",
        "Receive",
        "Scope",
        "body_chunks",
        "parse_form",
        "receive_file",
        "request_headers",
    ],
    "spoolup.errors": [
        "FileTooLarge",
        "MalformedRequest",
        "RequestTooLarge",
        "TooManyParts",
        "UnsupportedMediaType",
        "UploadAborted",
        "UploadError",
    ],
    "spoolup.files": ["FileInfo", "UploadedFile"],
    "spoolup.form": [
        "Body",
        "Form",
        "MultiDict",
        "aparse_form",
        "areceive_file",
        "parse_form",
        "receive_file",
    ],
    "spoolup.handlers": [
        "ContentTypeHandler",
        "FileInfo",
        "HandlerSpec",
        "HashingHandler",
        "MemoryFileHandler",
        "ProgressHandler",
        "SizeLimitHandler",
        "SkipFile",
        "SpooledFileHandler",
        "StopFutureHandlers",
        "StopUpload",
        "TemporaryFileHandler",
        "UploadContext",
        "UploadHandler",
        "default_handlers",
        "resolve_handlers",
    ],
    "spoolup.headers": [
        "check_boundary",
        "decode_header_value",
        "form_data_disposition",
        "is_media_type",
        "media_type",
        "multipart_boundary",
        "parse_options_header",
        "percent_decode",
        "safe_filename",
    ],
    "spoolup.limits": ["Limits"],
    "spoolup.multipart": ["Event", "MultipartParser", "PartData", "PartEnd", "PartStart"],
    "spoolup.storage": [
        "AsyncObjectWriter",
        "InsufficientStorage",
        "InvalidKey",
        "InvalidMetadata",
        "ListPage",
        "LocalStorage",
        "ObjectInfo",
        "ObjectMeta",
        "ObjectNotFound",
        "ObjectWriter",
        "PartInfo",
        "ResumableStorage",
        "S3Storage",
        "Storage",
        "StorageError",
        "StorageHandler",
        "StoredFile",
        "random_key",
        "validate_key",
    ],
    "spoolup.storage.base": ["Storage"],
    "spoolup.storage.errors": [
        "InsufficientStorage",
        "InvalidKey",
        "InvalidMetadata",
        "ObjectNotFound",
        "StorageError",
    ],
    "spoolup.storage.handler": ["StorageHandler", "StoredFile", "random_key"],
    "spoolup.storage.leases": [
        "DEFAULT_TTL",
        "ConditionalWritesUnsupported",
        "HeldLeases",
        "Lease",
        "LeaseLost",
        "ObjectLock",
        "UploadLock",
    ],
    "spoolup.storage.local": ["LocalStorage"],
    "spoolup.storage.meta": [
        "MAX_KEY_LENGTH",
        "MAX_METADATA_SIZE",
        "ListPage",
        "ObjectInfo",
        "ObjectMeta",
        "PartInfo",
        "decode_metadata_value",
        "encode_metadata_value",
        "validate_key",
        "validate_metadata",
    ],
    "spoolup.storage.owners": ["is_dead", "owner_of", "this_process"],
    "spoolup.storage.ranges": ["FileRangeReader", "LazyRangeReader", "RangeReader", "check_range"],
    "spoolup.storage.resumable": ["PartAppender", "ResumableStorage", "WriteConflict"],
    "spoolup.storage.s3": ["S3Storage"],
    "spoolup.storage.writer": ["AsyncObjectWriter", "ObjectWriter", "WriteSource"],
    "spoolup.integrations.django": [
        "DjangoStorageHandler",
        "SpoolupInMemoryUploadedFile",
        "SpoolupStoredUploadedFile",
        "SpoolupTemporaryUploadedFile",
        "SpoolupUploadHandler",
        "StoredFile",
        "UploadMiddleware",
        "UploadRefused",
        "get_asgi_application",
        "parse_form",
        "receive_file",
        "upload_options",
    ],
    "spoolup.integrations.django.asgi": [
        "BATCH_SIZE",
        "SpoolupASGIHandler",
        "get_asgi_application",
    ],
    "spoolup.integrations.django.config": ["Options", "options_for", "upload_options"],
    "spoolup.integrations.django.files": [
        "SpoolupInMemoryUploadedFile",
        "SpoolupStoredUploadedFile",
        "SpoolupTemporaryUploadedFile",
        "django_file",
    ],
    "spoolup.integrations.django.handler": ["SpoolupUploadHandler", "check_file_upload_handlers"],
    "spoolup.integrations.django.middleware": ["UploadMiddleware", "error_response"],
    "spoolup.integrations.django.request": [
        "UploadRefused",
        "install",
        "is_form",
        "parse_form",
        "receive_file",
        "view_of",
    ],
    "spoolup.integrations.django.storage": ["DjangoStorageHandler", "StoredFile"],
    "spoolup.integrations.fastapi": [
        "FormDependency",
        "UploadFileDependency",
        "document",
        "form",
        "form_limits",
        "upload_file",
    ],
    "spoolup.integrations.flask": [
        "Spoolup",
        "SpoolupFileStorage",
        "parse_form",
        "receive_file",
        "upload_options",
    ],
    "spoolup.integrations.litestar": [
        "SpoolupPlugin",
        "provide_form",
        "request_limits",
        "upload_options",
    ],
    "spoolup.integrations.starlette": [
        "install",
        "parse_form",
        "receive_file",
        "request_limits",
        "upload_error_response",
    ],
    "spoolup.tus": [
        "TUS_VERSION",
        "CompletionCallback",
        "TusApp",
        "TusLimits",
        "TusProtocol",
        "TusStore",
        "UploadInfo",
        "create_tus_app",
    ],
    "spoolup.tus.app": [
        "CompletionCallback",
        "CreationCallback",
        "FinalKey",
        "TusApp",
        "create_tus_app",
    ],
    "spoolup.tus.client": ["TusClientError", "TusUploadResult", "default_state_file", "tus_upload"],
    "spoolup.tus.lock": [
        "DEFAULT_TTL",
        "ConditionalWritesUnsupported",
        "Lease",
        "LeaseKeeper",
        "LeaseLost",
        "ObjectLock",
        "RedisLock",
        "UploadLock",
        "lock_for",
    ],
    "spoolup.tus.quota": ["CLIENT", "OpenUploads", "client_key"],
    "spoolup.tus.protocol": [
        "CHECKSUM_ALGORITHMS",
        "EXTENSIONS",
        "OFFSET_CONTENT_TYPE",
        "TUS_VERSION",
        "Checksum",
        "ChecksumMismatch",
        "Create",
        "Delete",
        "Head",
        "Options",
        "Patch",
        "Response",
        "TusError",
        "TusLimits",
        "TusProtocol",
        "TusRequest",
        "UploadGone",
        "UploadLocked",
        "UploadNotFound",
        "headers_from_asgi",
        "is_upload_id",
        "parse_metadata",
    ],
    "spoolup.tus.state": ["StateError", "UploadInfo"],
    "spoolup.tus.store": ["DataWriter", "TusStore"],
    "spoolup.urlencoded": ["Field", "URLEncodedParser"],
    "spoolup.wsgi": ["body_chunks", "content_length", "parse_form", "receive_file"],
}
APPLICATIONS = ("spoolup.server", "spoolup.commands")


def public_modules() -> list[str]:
    """Every importable module of the package with no private part in its name."""
    found = pkgutil.walk_packages(spoolup.__path__, "spoolup.")
    return sorted(
        info.name
        for info in found
        if not any(part.startswith("_") for part in info.name.split(".")[1:])
    )


def test_every_library_submodule_all_is_pinned() -> None:
    library = [
        name
        for name in public_modules()
        if not name.startswith(APPLICATIONS) and name != "spoolup.cli"
    ]
    modules = {name: importlib.import_module(name) for name in library}
    got = {name: list(m.__all__) for name, m in modules.items() if hasattr(m, "__all__")}
    assert got == SUBMODULES


@pytest.mark.parametrize("name", public_modules())
def test_every_public_module_has_a_deliberate_surface(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        # A package that only holds modules exports nothing of its own.
        own = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and not inspect.ismodule(v) and n != "annotations"
        ]
        assert own == [], f"{name} has public names but no __all__"
        return
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    for attr in exported:
        value = getattr(module, attr)  # every name exists
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name}.{attr} has no docstring"


def test_receiver_is_not_exported() -> None:
    import spoolup.form

    assert "Receiver" not in spoolup.form.__all__
