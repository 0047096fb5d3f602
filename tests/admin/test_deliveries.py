"""The webhook delivery admin: read-only, superuser-only delete, the reprocess action."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone
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
    field_texts,
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


def test_delivery_list_shows_times_to_the_second_errors_and_links(admin_client):
    customer = CustomerFactory(name="Ada Lovelace", email="ada@example.com")
    identification = IdentificationFactory(customer=customer)
    received = datetime(2025, 3, 13, 14, 5, 9, tzinfo=dt_timezone.utc)
    failed = delivery_for(
        identification,
        "PendingReview",
        outcome="failed",
        error="RuntimeError: database on fire\nand a second line",
        received_at=received,
    )
    stranger = IdentificationFactory.build(customer=CustomerFactory.build())
    delivery_for(stranger, "Approved", outcome="unknown_object")

    response = admin_client.get(changelist("webhookdelivery"))

    content = response.content.decode()
    assert "2025-03-13 14:05:09" in field_texts(response, "received")
    assert field_texts(response, "event") == [
        "identification_status Approved",
        "identification_status Pending review",
    ]
    assert field_texts(response, "error_summary") == ["-", "RuntimeError: database on fire"]
    assert field_texts(response, "about") == [
        "-",
        f"Ada Lovelace {str(identification.iron_id)[:8]}",
    ]
    assert f'<a href="{change("customer", customer.pk)}">' in content
    assert f'<a href="{change("identification", identification.pk)}">' in content
    assert str(failed.customer_iron_id) not in content  # short ids and names only


def test_delivery_page_is_titled_by_event_person_and_outcome(admin_client):
    customer = CustomerFactory(name="Ada Lovelace", email="ada@example.com")
    delivery = delivery_for(
        IdentificationFactory(customer=customer), "Approved", outcome="processed"
    )

    response = admin_client.get(change("webhookdelivery", delivery.pk))

    title = "identification_status Approved for Ada Lovelace &lt;ada@example.com&gt; · Processed"
    assert f"<h2>{title}</h2>" in response.content.decode()
    assert field_texts(response, "customer_link") == ["Ada Lovelace <ada@example.com>"]


def test_delivery_list_filters_the_ones_that_need_someone(admin_client):
    failed = WebhookDelivery.objects.create(webhook_id="a", body="{}", outcome="failed")
    waiting = WebhookDelivery.objects.create(webhook_id="b", body="{}", outcome="received")
    WebhookDelivery.objects.create(webhook_id="c", body="{}", outcome="processed")

    response = admin_client.get(changelist("webhookdelivery"), {"attention": "yes"})

    assert set(response.context["cl"].result_list) == {failed, waiting}
    assert "Failed or not acted on yet" in response.content.decode()
