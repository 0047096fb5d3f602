"""URLs of django-iron-kyc. Include them under any prefix::

    path("iron/", include("django_iron_kyc.urls")),

and register ``https://<your host>/iron/webhook/`` in Iron's Webhook console. The view is
named ``iron_kyc:webhook``. The same include adds the end-user JSON endpoint
``iron_kyc:verification`` (``verification/``) and page ``iron_kyc:verify`` (``verify/``).
For the webhook alone, include ``django_iron_kyc.urls_webhook`` instead.
"""

from __future__ import annotations

from django.urls import URLPattern, path

from . import urls_webhook
from .api import VerificationView
from .views import VerifyView

__all__ = ["app_name", "urlpatterns"]

app_name = "iron_kyc"

urlpatterns: list[URLPattern] = [
    *urls_webhook.urlpatterns,
    # The signed-in user's own verification: JSON for frontends, a page for browsers.
    path("verification/", VerificationView.as_view(), name="verification"),
    path("verify/", VerifyView.as_view(), name="verify"),
]
