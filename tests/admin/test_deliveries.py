"""The webhook delivery admin: read-only, superuser-only delete, the reprocess action."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from django_iron_kyc.models import Identification, WebhookDelivery
from django_iron_kyc.testing.factories import CustomerFactory, IdentificationFactory

from .support import (
    action_names,
    admin_log,
    change,
    changelist,
    delivery_for,
    identification_at_iron,
    messages_of,
    post_action,
    staff_client,
)

pytestmark = pytest.mark.django_db


def test_webhook_delivery_admin_is_read_only(admin_client):
    delivery = WebhookDelivery.objects.create(webhook_id="msg_1", body='{"type": "ping"}')

    page = admin_client.get(change("webhookdelivery", delivery.pk)).content.decode()
    post = admin_client.post(change("webhookdelivery", delivery.pk), {"outcome": "processed"})

    assert admin_client.get(reverse("admin:iron_kyc_webhookdelivery_add")).status_code == 403
    assert 'value="Save"' not in page
    assert "&quot;type&quot;: &quot;ping&quot;" in page
    assert post.status_code == 403
    delivery.refresh_from_db()
    assert delivery.outcome == WebhookDelivery.Outcome.RECEIVED


def test_webhook_deliveries_only_superusers_delete():
    client = staff_client("view_webhookdelivery", "delete_webhookdelivery")
    delivery = WebhookDelivery.objects.create(webhook_id="msg_1", body="{}")

    response = client.get(reverse("admin:iron_kyc_webhookdelivery_delete", args=[delivery.pk]))

    assert response.status_code == 403
    assert "delete_selected" not in action_names(client.get(changelist("webhookdelivery")))


def test_webhook_delivery_changelist_filters_by_outcome_and_type(admin_client):
    failed = WebhookDelivery.objects.create(
        webhook_id="a", body="{}", event_type="identification_status", outcome="failed"
    )
    ping = WebhookDelivery.objects.create(webhook_id="b", body="{}", event_type="ping")

    def results(**params: str) -> list[WebhookDelivery]:
        return list(
            admin_client.get(changelist("webhookdelivery"), params).context["cl"].result_list
        )

    assert results(outcome__exact="failed") == [failed]
    assert results(event_type="ping") == [ping]


def test_reprocess_action_needs_the_change_permission():
    client = staff_client("view_webhookdelivery")
    WebhookDelivery.objects.create(webhook_id="msg_1", body="{}")

    assert "reprocess" not in action_names(client.get(changelist("webhookdelivery")))


def test_reprocess_action_applies_stored_deliveries_again_and_counts_outcomes(
    admin_client, fake_iron
):
    identification = identification_at_iron(fake_iron)
    failed = delivery_for(
        identification, "Approved", outcome=WebhookDelivery.Outcome.FAILED, error="boom"
    )
    stranger = IdentificationFactory.build(customer=CustomerFactory.build())
    unknown = delivery_for(stranger, "Approved", outcome=WebhookDelivery.Outcome.UNKNOWN_OBJECT)

    response = post_action(admin_client, "webhookdelivery", "reprocess", [failed, unknown])

    identification.refresh_from_db()
    failed.refresh_from_db()
    assert identification.status == "Approved"
    assert failed.outcome == WebhookDelivery.Outcome.PROCESSED
    assert messages_of(response) == [
        "2 deliveries reprocessed (1 Processed, 1 Unknown customer or identification)"
    ]
    for delivery in (failed, unknown):
        (entry,) = admin_log(delivery)
        assert entry.get_change_message().startswith("Reprocessed: ")
    assert fake_iron.requests == []


def test_reprocess_action_reports_a_delivery_that_fails_again(admin_client, monkeypatch):
    delivery = delivery_for(
        IdentificationFactory(), "Approved", webhook_id="msg_broken", outcome="failed"
    )

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database on fire")

    # Saving the identification fails, wherever in the package the delivery is processed.
    monkeypatch.setattr(Identification, "save", explode)
    response = post_action(admin_client, "webhookdelivery", "reprocess", [delivery])

    assert messages_of(response) == [
        "0 deliveries reprocessed; 1 failed (msg_broken: RuntimeError: database on fire)"
    ]


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        pytest.param("[" * 30_000 + "]" * 30_000, "[[[[[[[[", id="nested-deeper-than-json-reads"),
        pytest.param('{"name": "\\ud800"}', '"name": "\\ud800"', id="lone-surrogate-in-json"),
        pytest.param('{"name": "\\udc00" oops', "\\udc00&quot; oops", id="not-json"),
        pytest.param("<script>alert(1)</script>", "&lt;script&gt;alert(1)", id="html"),
        pytest.param('{"b": 1, "a": "Zoë"}', "{\n  &quot;a&quot;: &quot;Zoë&quot;,", id="json"),
    ],
)
def test_webhook_delivery_page_shows_any_stored_body_safely(admin_client, body, shown):
    delivery = WebhookDelivery.objects.create(webhook_id="msg_1", body=body)

    response = admin_client.get(change("webhookdelivery", delivery.pk))

    assert response.status_code == 200
    content = response.content.decode()
    assert shown.replace('"', "&quot;") in content
    assert "<script>alert" not in content


def test_webhook_delivery_page_caps_a_long_body():
    client = staff_client("view_webhookdelivery")
    body = '"' + "x" * 50_000 + '"'
    delivery = WebhookDelivery.objects.create(webhook_id="msg_1", body=body)

    content = client.get(change("webhookdelivery", delivery.pk)).content.decode()

    assert "x" * 19_000 in content
    assert "x" * 20_001 not in content
    assert "30002 more characters not shown" in content
