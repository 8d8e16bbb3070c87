import dataclasses

import pytest

from spoolup import Limits, RequestTooLarge


def test_every_default_is_finite_and_positive() -> None:
    limits = Limits()
    for field in dataclasses.fields(limits):
        value = getattr(limits, field.name)
        assert isinstance(value, int)
        assert 0 < value < 2**63


def test_frozen_and_keyword_only() -> None:
    limits = Limits(max_files=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_files = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        Limits(10)  # type: ignore[call-arg]
    assert dataclasses.replace(limits, max_files=5).max_files == 5


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True, None])
def test_rejects_values_that_are_not_sizes(bad: object) -> None:
    with pytest.raises(ValueError, match="max_body_size"):
        Limits(max_body_size=bad)  # type: ignore[arg-type]


def test_check_body_size() -> None:
    limits = Limits(max_body_size=10)
    limits.check_body_size(10)
    with pytest.raises(RequestTooLarge, match="max_body_size=10") as info:
        limits.check_body_size(11)
    assert info.value.status == 413
    assert info.value.limit == "max_body_size"
