import os

from spoolup.integrations.django import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.integrations.django.project.settings")
application = get_asgi_application()
