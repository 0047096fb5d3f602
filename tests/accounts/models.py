from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A custom user model, as most host projects have."""

    class Meta:
        app_label = "accounts"


class KycNote(models.Model):
    """A host project's row that goes with its Iron customer (``on_delete=CASCADE``)."""

    customer = models.ForeignKey("iron_kyc.Customer", on_delete=models.CASCADE)
    text = models.TextField(blank=True)

    class Meta:
        app_label = "accounts"

    def __str__(self) -> str:
        return f"note #{self.pk}"


class Payout(models.Model):
    """A host project's row that keeps its Iron customer from being deleted (``PROTECT``)."""

    customer = models.ForeignKey("iron_kyc.Customer", on_delete=models.PROTECT)

    class Meta:
        app_label = "accounts"

    def __str__(self) -> str:
        return f"payout #{self.pk}"
