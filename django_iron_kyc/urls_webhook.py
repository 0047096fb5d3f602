"""Iron's webhook alone, for a project that does not want the end-user endpoint and page::

    path("iron/", include("django_iron_kyc.urls_webhook")),

The view is still named ``iron_kyc:webhook``; ``django_iron_kyc.urls`` includes it too.
"""

from __future__ import annotations

from django.urls import URLPattern, path

from .webhooks import IronWebhookView

__all__ = ["app_name", "urlpatterns"]

app_name = "iron_kyc"

urlpatterns: list[URLPattern] = [
    # IronWebhookView.as_view() is CSRF-exempt (DRF) and opts out of ATOMIC_REQUESTS on
    # every database (transaction.non_atomic_requests), so a stored delivery or a recorded
    # failure is never rolled back with the request.
    path("webhook/", IronWebhookView.as_view(), name="webhook"),
]
