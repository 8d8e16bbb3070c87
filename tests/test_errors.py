import pytest

from spoolup import errors


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (errors.UploadError, 400),
        (errors.MalformedRequest, 400),
        (errors.RequestTooLarge, 413),
        (errors.FileTooLarge, 413),
        (errors.TooManyParts, 413),
        (errors.UnsupportedMediaType, 415),
        (errors.UploadAborted, 400),
    ],
)
def test_status_per_class(cls: type[errors.UploadError], status: int) -> None:
    exc = cls("what went wrong")
    assert exc.status == status
    assert exc.message == "what went wrong"
    assert str(exc) == "what went wrong"
    assert isinstance(exc, errors.UploadError)


def test_status_can_be_overridden_per_instance() -> None:
    exc = errors.UploadError("gone", status=410)
    assert exc.status == 410
    assert errors.UploadError("x").status == 400
    assert repr(exc) == "UploadError('gone', status=410)"


def test_limit_error_names_limit_and_value() -> None:
    exc = errors.FileTooLarge.for_limit("max_file_size", 2048, "file 'a.png'")
    assert isinstance(exc, errors.FileTooLarge)
    assert exc.limit == "max_file_size"
    assert exc.value == 2048
    assert "max_file_size=2048" in exc.message
    assert "a.png" in exc.message


def test_every_error_is_listed_in_the_module_docstring() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        assert name in doc
