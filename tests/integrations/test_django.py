import os
import tempfile
from pathlib import Path

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(DEBUG=False, ALLOWED_HOSTS=["testserver"], USE_TZ=True)
    django.setup()

from django.test import RequestFactory

from spoolup import FileTooLarge, Limits
from spoolup.integrations.django import parse_form, receive_file
from tests.integrations.helpers import CONTENT_TYPE, EXPECTED, body, summary


@pytest.fixture
def tmpdir_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_form_through_django(tmpdir_empty: Path) -> None:
    request = RequestFactory().generic("POST", "/form", body(), content_type=CONTENT_TYPE)
    with parse_form(request, limits=Limits(max_file_size=4 << 20)) as form:
        assert summary(form) == EXPECTED
    assert os.listdir(tmpdir_empty) == []


def test_oversized_file_is_refused_and_nothing_is_left(tmpdir_empty: Path) -> None:
    request = RequestFactory().generic("POST", "/form", body(), content_type=CONTENT_TYPE)
    with pytest.raises(FileTooLarge) as info:
        parse_form(request, limits=Limits(max_file_size=1 << 20))
    assert info.value.status == 413
    assert os.listdir(tmpdir_empty) == []


def test_raw_body(tmpdir_empty: Path) -> None:
    request = RequestFactory().generic("PUT", "/raw", b"a,b\n1,2\n", content_type="text/csv")
    file = receive_file(request, filename="table.csv")
    assert file is not None
    with file:
        assert (file.filename, file.size, file.content_type, file.read()) == (
            "table.csv",
            8,
            "text/csv",
            b"a,b\n1,2\n",
        )


def test_client_leaving_mid_body_is_an_abort(tmpdir_empty: Path) -> None:
    from django.http import UnreadablePostError

    from spoolup import UploadAborted

    request = RequestFactory().generic("POST", "/form", body(), content_type=CONTENT_TYPE)
    real_read = request.read
    calls = 0

    def cut(size: int = -1) -> bytes:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise UnreadablePostError("connection reset")
        data: bytes = real_read(1000)
        return data

    request.read = cut
    with pytest.raises(UploadAborted) as info:
        parse_form(request)
    assert info.value.status >= 400
    assert os.listdir(tmpdir_empty) == []
