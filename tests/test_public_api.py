"""The public surface of ``spoolup`` is deliberate: this test pins it."""

from __future__ import annotations

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
