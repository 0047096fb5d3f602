"""URLs of django-iron-kyc. Include them under any prefix::

    path("iron/", include("django_iron_kyc.urls")),

and register ``https://<your host>/iron/webhook/`` in Iron's Webhook console. The view is
named ``iron_kyc:webhook``. The same include adds the end-user JSON endpoint
``iron_kyc:verification`` (``verification/``) and page ``iron_kyc:verify`` (``verify/``).
For the webhook alone, include ``django_iron_kyc.urls_webhook`` instead.
"""

from __future__ import annotations

from django.urls import URLPattern, path

from .api import VerificationView
from .views import VerifyView
from .webhooks import IronWebhookView

__all__ = ["enduser_urlpatterns", "urlpatterns", "webhook_urlpatterns"]

app_name = "iron_kyc"

webhook_urlpatterns: list[URLPattern] = [
    # IronWebhookView.as_view() is CSRF-exempt (DRF) and opts out of ATOMIC_REQUESTS on
    # every database (transaction.non_atomic_requests), so a stored delivery or a recorded
    # failure is never rolled back with the request.
    path("webhook/", IronWebhookView.as_view(), name="webhook"),
]

# The signed-in user's own verification: JSON for frontends, a page for browsers.
enduser_urlpatterns: list[URLPattern] = [
    path("verification/", VerificationView.as_view(), name="verification"),
    path("verify/", VerifyView.as_view(), name="verify"),
]

urlpatterns: list[URLPattern] = [*webhook_urlpatterns, *enduser_urlpatterns]
