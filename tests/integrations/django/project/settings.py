"""A small Django project, as a user would write it, for the integration tests and benchmark.

Everything it writes goes under ``$SPOOLUP_DJANGO_DIR`` (the database, ``media/``
for ``MEDIA_ROOT`` and ``tmp/`` for ``FILE_UPLOAD_TEMP_DIR``, on one filesystem so
that a saved upload is a rename). ``SPOOLUP_DJANGO_NATIVE=1`` leaves spoolup's
middleware out: Django's own upload handling, for the benchmark's side-by-side runs.
``SPOOLUP_DJANGO_S3_*`` give the ``"s3"`` storage (django-storages) its endpoint.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

BASE = Path(os.environ.get("SPOOLUP_DJANGO_DIR") or Path(tempfile.gettempdir()) / "spoolup-django")
NATIVE = os.environ.get("SPOOLUP_DJANGO_NATIVE") == "1"

SECRET_KEY = "spoolup-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
ROOT_URLCONF = "tests.integrations.django.project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "tests.integrations.django.project.uploads",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    *([] if NATIVE else ["spoolup.integrations.django.UploadMiddleware"]),
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE / "db.sqlite3"}}

MEDIA_ROOT = BASE / "media"
FILE_UPLOAD_TEMP_DIR = BASE / "tmp"
# Django's defaults, written out: spoolup reads them.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
DATA_UPLOAD_MAX_NUMBER_FILES = 100

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "s3": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ.get("SPOOLUP_DJANGO_S3_BUCKET", "uploads"),
            "endpoint_url": os.environ.get("SPOOLUP_DJANGO_S3_ENDPOINT", "http://127.0.0.1:1"),
            "access_key": os.environ.get("SPOOLUP_DJANGO_S3_KEY", "none"),
            "secret_key": os.environ.get("SPOOLUP_DJANGO_S3_SECRET", "none"),
            "region_name": "us-east-1",
            "location": "media",
            "file_overwrite": False,
        },
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.security": {"handlers": ["stderr"], "level": "ERROR"}},
}
