"""The type a file's name suggests: the outermost compression decides."""

from __future__ import annotations

import pytest

from spoolup._mediatype import media_type_of_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("backup.tar.gz", "application/gzip"),
        ("backup.tgz", "application/gzip"),
        ("log.gz", "application/gzip"),
        ("drawing.svgz", "application/gzip"),
        ("backup.tar.bz2", "application/x-bzip2"),
        ("backup.tbz2", "application/x-bzip2"),
        ("backup.tar.xz", "application/x-xz"),
        ("page.html.br", "application/x-brotli"),
        ("old.tar.Z", "application/x-compress"),
        ("backup.tar", "application/x-tar"),
        ("notes.txt", "text/plain"),
        ("photo.jpg", "image/jpeg"),
        ("no-suffix", "application/octet-stream"),
        ("archive.gz.txt", "text/plain"),
        # A name, never a URL: not read as a data: URL (which says text/plain).
        ("data:,photo.png", "image/png"),
        ("data:;base64,backup.tar.gz", "application/gzip"),
        ("DATA:,NOTES", "application/octet-stream"),
        ("http:photo.jpg", "image/jpeg"),
        ("PHOTO.JPG", "image/jpeg"),
    ],
)
def test_type_follows_the_outermost_encoding(name: str, expected: str) -> None:
    assert media_type_of_name(name) == expected
