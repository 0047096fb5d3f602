"""A project can include the webhook alone, without the end-user endpoint and page."""

from __future__ import annotations

import uuid

import pytest
from django.urls import NoReverseMatch, include, path, reverse

from django_iron_kyc.models import WebhookDelivery
from django_iron_kyc.testing import build_event

# This module is the URLconf of its tests: the webhook alone, as the README shows.
urlpatterns = [path("iron/", include("django_iron_kyc.urls_webhook"))]


@pytest.mark.urls(__name__)
def test_the_webhook_alone_keeps_its_name_and_leaves_out_the_end_user_urls():
    assert reverse("iron_kyc:webhook") == "/iron/webhook/"
    for name in ("iron_kyc:verification", "iron_kyc:verify"):
        with pytest.raises(NoReverseMatch):
            reverse(name)


@pytest.mark.urls(__name__)
def test_the_webhook_alone_still_takes_deliveries(db, send_iron_webhook):
    ping = build_event("ping", str(uuid.uuid4()), str(uuid.uuid4()), "Ok")

    response = send_iron_webhook(ping)

    assert response.status_code == 200
    assert WebhookDelivery.objects.get().outcome == WebhookDelivery.Outcome.IGNORED


def test_the_full_include_has_the_webhook_the_endpoint_and_the_page():
    assert reverse("iron_kyc:webhook") == "/iron/webhook/"
    assert reverse("iron_kyc:verification") == "/iron/verification/"
    assert reverse("iron_kyc:verify") == "/iron/verify/"
