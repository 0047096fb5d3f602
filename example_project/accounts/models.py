from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A user whose identity is verified through Iron (see ``receivers.py``)."""

    class KycStatus(models.TextChoices):
        UNVERIFIED = "unverified", "Not verified yet"
        VERIFIED = "verified", "Verified"
        DECLINED = "declined", "Declined"
        EXPIRED = "expired", "Expired"

    kyc_status = models.CharField(
        "identity check", max_length=16, choices=KycStatus.choices, default=KycStatus.UNVERIFIED
    )
    kyc_decided_at = models.DateTimeField("identity decided at", null=True, blank=True)

    @property
    def is_verified(self) -> bool:
        return self.kyc_status == self.KycStatus.VERIFIED
