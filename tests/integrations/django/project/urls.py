from django.contrib import admin
from django.urls import path

from tests.integrations.django.project.uploads import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("image/", views.image),
    path("backup/", views.backup),
    path("async-backup/", views.async_backup),
    path("async-body/", views.async_body),
    path("docs/new/", views.DocumentCreate.as_view()),
    path("docs/<int:pk>/", views.document),
    path("echo/", views.echo),
    path("raw/", views.raw),
    path("consumed/", views.consumed),
    path("form/", views.spoolup_form),
    path("csrf/", views.csrf),
]
