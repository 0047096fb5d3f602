"""URLs of django-iron-kyc. Include them under any prefix::

    path("iron/", include("django_iron_kyc.urls")),

and register ``https://<your host>/iron/webhook/`` in Iron's Webhook console. The view is
named ``iron_kyc:webhook``.
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
