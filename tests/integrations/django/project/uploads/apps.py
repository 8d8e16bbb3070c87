from django.apps import AppConfig


class UploadsConfig(AppConfig):  # type: ignore[misc]
    name = "tests.integrations.django.project.uploads"
    label = "uploads"
