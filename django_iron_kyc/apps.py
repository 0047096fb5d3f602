from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

__all__ = ["IronKycConfig"]


class IronKycConfig(AppConfig):
    """django-iron-kyc. The app label is pinned to ``iron_kyc`` (tables, permissions)."""

    name = "django_iron_kyc"
    label = "iron_kyc"
    verbose_name = _("Iron KYC")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks, and the Celery tasks that services and webhooks
        # enqueue by name (enqueue.py).
        from . import checks, tasks  # noqa: F401  lazy import: models load after apps
