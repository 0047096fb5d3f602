"""Iron's webhook alone, for a project that does not want the end-user endpoint and page::

    path("iron/", include("django_iron_kyc.urls_webhook")),

The view is still named ``iron_kyc:webhook``.
"""

from __future__ import annotations

from .urls import app_name, webhook_urlpatterns

__all__ = ["app_name", "urlpatterns"]

urlpatterns = webhook_urlpatterns
