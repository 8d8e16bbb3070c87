"""What a request's upload runs with: limits and handlers from Django's settings.

``SPOOLUP = {"LIMITS": {...}, "HANDLERS": [...]}`` in the settings wins; where it is
silent, Django's own settings apply with their meaning:

==================================  =============================================
Django setting                      spoolup
==================================  =============================================
``DATA_UPLOAD_MAX_NUMBER_FIELDS``   ``Limits.max_fields``
``DATA_UPLOAD_MAX_NUMBER_FILES``    ``Limits.max_files``
``DATA_UPLOAD_MAX_MEMORY_SIZE``     non-file data: each value (``max_field_size``),
                                    all values of a form together, and the whole of
                                    an urlencoded body (``max_body_size``)
``FILE_UPLOAD_MAX_MEMORY_SIZE``     ``Limits.memory_threshold`` (in memory up to it)
``FILE_UPLOAD_TEMP_DIR``            where the spooled and temporary files go
==================================  =============================================

A Django setting of ``None`` ("no check") leaves spoolup's finite default in force.
The decorator :func:`upload_options` overrides both for one view.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from spoolup.handlers import (
    HandlerSpec,
    SpooledFileHandler,
    TemporaryFileHandler,
    UploadHandler,
)
from spoolup.limits import Limits

__all__ = ["Options", "options_for", "upload_options"]

F = TypeVar("F", bound=Callable[..., Any])

_LIMIT_NAMES = frozenset(f.name for f in dataclasses.fields(Limits))
# Django setting -> Limits field, applied where SPOOLUP["LIMITS"] does not name the field.
_FROM_DJANGO = (
    ("DATA_UPLOAD_MAX_NUMBER_FIELDS", "max_fields"),
    ("DATA_UPLOAD_MAX_NUMBER_FILES", "max_files"),
    ("DATA_UPLOAD_MAX_MEMORY_SIZE", "max_field_size"),
    ("FILE_UPLOAD_MAX_MEMORY_SIZE", "memory_threshold"),
)


@dataclass(frozen=True, slots=True)
class Options:
    """The limits and handler chain of one request.

    Attributes:
        limits: the :class:`~spoolup.Limits` in force.
        handlers: handler factories (never shared instances), the chain of one request.
        form_memory: bytes of non-file data allowed in one form, all values together
            (Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``), or ``None``.
    """

    limits: Limits
    handlers: tuple[HandlerSpec, ...]
    form_memory: int | None


def _spoolup_setting() -> Mapping[str, Any]:
    value = getattr(settings, "SPOOLUP", None) or {}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured("SPOOLUP must be a dict with the keys LIMITS and HANDLERS")
    unknown = set(value) - {"LIMITS", "HANDLERS"}
    if unknown:
        msg = f"SPOOLUP has unknown keys {sorted(unknown)}: only LIMITS and HANDLERS"
        raise ImproperlyConfigured(msg)
    return value


def _check_limit_names(given: Mapping[str, Any], where: str) -> None:
    unknown = set(given) - _LIMIT_NAMES
    if unknown:
        msg = f"{where} has unknown limits {sorted(unknown)}; the names are {sorted(_LIMIT_NAMES)}"
        raise ImproperlyConfigured(msg)


def settings_limits() -> tuple[Limits, int | None]:
    """The limits from ``SPOOLUP["LIMITS"]`` and Django's settings, and the form memory."""
    given = dict(_spoolup_setting().get("LIMITS") or {})
    _check_limit_names(given, 'SPOOLUP["LIMITS"]')
    derived: dict[str, int] = {}
    for setting, field in _FROM_DJANGO:
        value = getattr(settings, setting, None)
        if value is not None and field not in given:
            derived[field] = value
    form_memory = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if "max_field_size" in given:
        form_memory = None  # SPOOLUP speaks for non-file data
    try:
        return Limits(**{**derived, **given}), form_memory
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"SPOOLUP['LIMITS']: {exc}") from exc


def _factory(spec: object, where: str) -> HandlerSpec:
    obj = import_string(spec) if isinstance(spec, str) else spec
    if isinstance(obj, UploadHandler):
        msg = (
            f"{where}: {obj!r} is a handler instance, which concurrent requests would share; "
            "give its class or a factory (functools.partial) instead"
        )
        raise ImproperlyConfigured(msg)
    if not callable(obj):
        raise ImproperlyConfigured(f"{where}: {obj!r} is not a handler class or factory")
    temp_dir = settings.FILE_UPLOAD_TEMP_DIR
    if (
        temp_dir
        and isinstance(obj, type)
        and issubclass(obj, (SpooledFileHandler, TemporaryFileHandler))
    ):
        return cast("HandlerSpec", functools.partial(obj, temp_dir=temp_dir))
    return cast("HandlerSpec", obj)


def _factories(specs: Iterable[object], where: str) -> tuple[HandlerSpec, ...]:
    if isinstance(specs, (str, bytes)):
        raise ImproperlyConfigured(f"{where} must be a list of handlers, not a string")
    return tuple(_factory(spec, where) for spec in specs)


def settings_handlers() -> tuple[HandlerSpec, ...]:
    """The chain of ``SPOOLUP["HANDLERS"]``; by default one :class:`SpooledFileHandler`."""
    specs = _spoolup_setting().get("HANDLERS")
    if specs is None:
        return _factories([SpooledFileHandler], "the default handlers")
    return _factories(specs, 'SPOOLUP["HANDLERS"]')


def settings_options() -> Options:
    """The options every request gets unless its view says otherwise."""
    limits, form_memory = settings_limits()
    return Options(limits, settings_handlers(), form_memory)


def upload_options(
    *,
    limits: Limits | Mapping[str, int] | None = None,
    handlers: Iterable[HandlerSpec | str] | None = None,
) -> Callable[[F], F]:
    """Per-view limits or handlers, for ``request.POST``/``FILES`` and ``parse_form``.

    ``limits`` is a :class:`~spoolup.Limits` (used as it is) or a dict of ``Limits``
    keywords that override the settings' limits; ``handlers`` replace the chain (classes,
    factories or dotted paths; not instances, which concurrent requests would share)::

        @upload_options(limits={"max_file_size": 2 * 1024 * 1024}, handlers=[MemoryFileHandler])
        def avatar(request): ...

    Works on function views and on ``View.as_view()``; the view is returned unchanged
    but for an attribute, so it stays sync or async as it was.
    """
    if isinstance(limits, Mapping):
        _check_limit_names(limits, "upload_options(limits=...)")
    factories = None if handlers is None else _factories(handlers, "upload_options(handlers=...)")

    def decorate(view: F) -> F:
        view.spoolup_options = (limits, factories)  # type: ignore[attr-defined]
        return view

    return decorate


def options_for(view: object) -> Options:
    """The options of a request to ``view`` (``None``: the settings' options)."""
    options = settings_options()
    override = getattr(view, "spoolup_options", None)
    if override is None:
        return options
    limits, handlers = override
    form_memory = options.form_memory
    if isinstance(limits, Limits):
        new_limits, form_memory = limits, None
    elif limits:
        new_limits = dataclasses.replace(options.limits, **limits)
        if "max_field_size" in limits:
            form_memory = None
    else:
        new_limits = options.limits
    return Options(new_limits, options.handlers if handlers is None else handlers, form_memory)
