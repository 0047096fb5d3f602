"""What every admin page holds: no secret shown, a constant number of queries per changelist."""

from __future__ import annotations

import base64
import html
import re
from typing import Any

import pytest
import responses
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_iron_kyc.conf import iron_settings
from django_iron_kyc.models import WebhookDelivery
from django_iron_kyc.testing.events import build_event, encode_event
from django_iron_kyc.testing.factories import IdentificationFactory

from .support import (
    SANDBOX_PATH,
    change,
    changelist,
    customer_at_iron,
    delivery_for,
    identification_at_iron,
    local_customer,
    post_action,
    sandbox_url,
    start_url,
)

pytestmark = pytest.mark.django_db


def test_no_admin_page_shows_the_api_key_or_webhook_secret(admin_client, fake_iron):
    pending = identification_at_iron(fake_iron)
    customer = pending.customer
    delivery = WebhookDelivery.objects.create(
        webhook_id="msg_1",
        event_type="identification_status",
        body=encode_event(
            build_event("identification_status", customer.iron_id, pending.iron_id, "Approved")
        ).decode(),
    )
    secrets = [iron_settings.API_KEY, *iron_settings.WEBHOOK_SECRETS]
    assert all(secrets)
    pages = [
        admin_client.get(reverse("admin:index")),
        admin_client.get(reverse("admin:app_list", args=["iron_kyc"])),
        admin_client.get(changelist("customer")),
        admin_client.get(changelist("customer") + "?q=example"),
        admin_client.get(change("customer", customer.pk)),
        admin_client.get(start_url(customer)),
        admin_client.get(changelist("identification")),
        admin_client.get(change("identification", pending.pk)),
        admin_client.get(sandbox_url("approve", pending)),
        admin_client.get(sandbox_url("decline", pending)),
        post_action(admin_client, "identification", "sandbox_approve", [pending]),
        post_action(admin_client, "identification", "sandbox_decline", [pending]),
        admin_client.get(changelist("webhookdelivery")),
        admin_client.get(change("webhookdelivery", delivery.pk)),
        admin_client.get(reverse("admin:iron_kyc_webhookdelivery_delete", args=[delivery.pk])),
    ]
    for page in pages:
        assert page.status_code == 200, page.wsgi_request.path
        content = page.content.decode()
        for secret in secrets:
            assert secret not in content, page.wsgi_request.path
    assert fake_iron.requests_to("POST", SANDBOX_PATH) == []


def test_no_admin_page_shows_the_proxy_credentials(admin_client):
    customer = local_customer(1)
    credentials = "proxy-user:pr0xy-s3cret"
    proxy = f"http://{credentials}@127.0.0.1:3128"
    token = base64.b64encode(credentials.encode()).decode()
    # A proxy's error page that echoes what it was sent.
    echo = f"Proxy-Authorization: Basic {token} for {proxy} refused"

    with override_settings(IRON_KYC_PROXY=proxy), responses.RequestsMock() as rsps:
        rsps.get(re.compile(r".*/api/customers/"), body=echo, status=407)
        post_action(admin_client, "customer", "refresh_from_iron", [customer])
        pages = [
            admin_client.get(changelist("customer")),  # shows the action's message
            admin_client.get(change("customer", customer.pk)),
        ]

    assert "Iron answered 407: Proxy-Authorization: Basic ******** for http://********@" in (
        pages[0].content.decode()
    )
    for page in pages:
        assert page.status_code == 200
        content = page.content.decode()
        for secret in ("pr0xy-s3cret", credentials, token):
            assert secret not in content, page.wsgi_request.path


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries)


def _add_customers(start: int, stop: int) -> None:
    user_model = get_user_model()
    for n in range(start, stop):
        customer = local_customer(n, user=user_model.objects.create_user(username=f"user{n}"))
        IdentificationFactory(customer=customer, expired=True, superseded=True)
        IdentificationFactory(customer=customer)


def _add_deliveries(start: int, stop: int) -> None:
    for n in range(start, stop):
        WebhookDelivery.objects.create(
            webhook_id=f"msg_{n}", body="{}", event_type=f"type_{n % 4}", outcome="processed"
        )


@pytest.mark.parametrize(
    ("model", "add"),
    [
        ("customer", _add_customers),
        ("identification", _add_customers),
        ("webhookdelivery", _add_deliveries),
    ],
)
def test_changelist_runs_a_constant_number_of_queries(admin_client, model, add):
    url = changelist(model)
    add(0, 3)
    admin_client.get(url)  # warm up the session and the content types cache
    small = _queries(admin_client, url)
    add(3, 30)
    large = _queries(admin_client, url)
    rows = admin_client.get(url).context["cl"].result_count

    assert rows >= 30
    assert large == small


def _visible_text(response: Any) -> str:
    """What a reader sees: the page without its tags, scripts, styles and attributes."""
    content = re.sub(r"<(script|style)\b.*?</\1>", " ", response.content.decode(), flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", content))


def test_each_page_spells_each_status_one_way(admin_client, fake_iron):
    customer = customer_at_iron(fake_iron, email="ada@example.com", name="Ada Lovelace")
    pending = identification_at_iron(fake_iron, customer, status="PendingReview")
    delivery = delivery_for(pending, "PendingReview")
    pages = [
        changelist("customer"),
        change("customer", customer.pk),
        start_url(customer),
        changelist("identification"),
        change("identification", pending.pk),
        sandbox_url("approve", pending),
        changelist("webhookdelivery"),
        change("webhookdelivery", delivery.pk),
        reverse("admin:iron_kyc_identification_history", args=[pending.pk]),
    ]
    for url in pages:
        text = _visible_text(admin_client.get(url))
        for iron_spelling in ("PendingReview", "IdentificationRequired"):
            # Only the raw body of a delivery shows what Iron sent, as Iron sent it.
            visible = re.split("raw body", text, flags=re.I)[0]
            assert iron_spelling not in visible, (url, iron_spelling)
        assert "Pending review" in text or "Identification required" in text, url


def test_history_pages_are_titled_by_person(admin_client):
    customer = local_customer(1, name="Ada Lovelace")

    content = admin_client.get(
        reverse("admin:iron_kyc_customer_history", args=[customer.pk])
    ).content.decode()

    assert (
        "Change history: Ada Lovelace &lt;c1@example.com&gt; · Identification required" in content
    )
    breadcrumbs = re.search(r'<div class="breadcrumbs">(.*?)</div>', content, re.S).group(1)
    assert "Ada Lovelace &lt;c1@example.com&gt;" in breadcrumbs
    assert str(customer.iron_id) not in breadcrumbs
