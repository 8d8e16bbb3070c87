from __future__ import annotations

import pytest

from spoolup.server.auth import token_matches


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"Bearer s3cret", True),
        (b"bearer s3cret", True),
        (b"  Bearer   s3cret ", True),
        (b"Bearer s3cre", False),
        (b"Bearer s3cret2", False),
        (b"Basic s3cret", False),
        (b"s3cret", False),
        (b"Bearer", False),
        (b"", False),
        (None, False),
    ],
)
def test_token_matches(header: bytes | None, expected: bool) -> None:
    assert token_matches(header, b"s3cret") is expected
