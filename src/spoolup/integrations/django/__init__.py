"""spoolup in Django: one setting, and ``request.POST``/``request.FILES`` are spoolup's.

::

    # settings.py
    MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "spoolup.integrations.django.UploadMiddleware",  # before CsrfViewMiddleware
        "django.middleware.csrf.CsrfViewMiddleware",
        ...
    ]
    SPOOLUP = {"LIMITS": {"max_file_size": 2 * 1024**3}}  # optional

No view changes: CSRF, forms, ``ModelForm``, ``CreateView`` and the admin read
``request.POST``/``FILES`` as before, filled lazily by spoolup's parser and handler
chain; files are Django ``UploadedFile`` types (in memory, or temp files that
``FileSystemStorage`` moves by rename) with the spoolup file at ``.spoolup``.

- :class:`UploadMiddleware` (:mod:`.middleware`): the parser, and the answers to
  refused uploads (413, 400, 415; JSON for ``Accept: application/json``).
- ``SPOOLUP`` settings and :func:`upload_options` (:mod:`.config`): limits and
  handlers; Django's ``DATA_UPLOAD_*`` and ``FILE_UPLOAD_*`` apply where ``SPOOLUP``
  is silent.
- :class:`DjangoStorageHandler` (:mod:`.storage`): straight into a Django storage.
- :class:`SpoolupUploadHandler` (:mod:`.handler`): the spoolup chain under Django's
  parser, for ``FILE_UPLOAD_HANDLERS``.
- :func:`get_asgi_application` (:mod:`.asgi`): the body streams to the parser,
  never spooled first.
- :func:`parse_form`, :func:`receive_file` (:mod:`.request`): a spoolup ``Form`` or
  file in a view.
"""

from spoolup.integrations.django.asgi import get_asgi_application
from spoolup.integrations.django.config import upload_options
from spoolup.integrations.django.files import (
    SpoolupInMemoryUploadedFile,
    SpoolupStoredUploadedFile,
    SpoolupTemporaryUploadedFile,
)
from spoolup.integrations.django.handler import SpoolupUploadHandler
from spoolup.integrations.django.middleware import UploadMiddleware
from spoolup.integrations.django.request import UploadRefused, parse_form, receive_file
from spoolup.integrations.django.storage import DjangoStorageHandler, StoredFile

__all__ = [
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
]
