"""MIRRORS THE README ("Testing your integration"): keep the two in step.

This is the code a host project writes; it runs here exactly as shown there (our test
settings play the host project's: Celery eager, the app's URLs included).
"""

import pytest
from django.dispatch import receiver

from django_iron_kyc import services
from django_iron_kyc.signals import identification_approved

# --- README snippet starts ---

# Your project's receiver (in your app, e.g. connected in AppConfig.ready()):
approved_emails = []


@receiver(identification_approved)
def on_identification_approved(sender, identification, customer, source, **kwargs):
    approved_emails.append((customer.email, source))


@pytest.mark.django_db(transaction=True)  # the app acts on commit: let transactions commit
def test_customer_is_approved_through_iron(fake_iron, send_iron_webhook):
    approved_emails.clear()
    customer = services.create_customer(email="ada@example.com")
    identification = services.start_identification(customer)  # Celery task, eager in tests

    identification.refresh_from_db()
    assert identification.status == "Pending"
    assert identification.url  # the hosted link to show your customer

    # Iron's compliance team approves; Iron sends signed webhooks.
    fake_iron.set_identification_status(identification.iron_id, "Approved")
    for delivery in fake_iron.outbox:
        assert send_iron_webhook(delivery).status_code == 200

    assert approved_emails == [("ada@example.com", "webhook")]


@pytest.mark.django_db(transaction=True)
def test_sandbox_approval_fires_the_signal_once(fake_iron, send_iron_webhook):
    approved_emails.clear()
    customer = services.create_customer(email="bob@example.com")
    identification = services.start_identification(customer)

    services.sandbox_approve(identification)  # what the admin's "Approve (sandbox)" does
    for delivery in fake_iron.outbox:  # Iron's webhooks about it change nothing more
        assert send_iron_webhook(delivery).status_code == 200

    assert approved_emails == [("bob@example.com", "sandbox")]


# --- README snippet ends ---
