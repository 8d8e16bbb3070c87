"""Django's own ASGI handler, for the side-by-side runs."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.integrations.django.project.settings")
application = get_asgi_application()
