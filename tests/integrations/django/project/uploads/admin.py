from django.contrib import admin

from tests.integrations.django.project.uploads.models import Document

admin.site.register(Document)
