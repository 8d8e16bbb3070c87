from django.db import models


class Document(models.Model):  # type: ignore[misc]
    """A titled file, kept under MEDIA_ROOT/docs/."""

    title = models.CharField(max_length=100)
    file = models.FileField(upload_to="docs/")

    def __str__(self) -> str:
        return str(self.title)
