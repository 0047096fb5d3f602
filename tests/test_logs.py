"""No personal data in any log record, over a customer's whole lifecycle.

Emails, names, review comments and requirement descriptions are personal data: the app's logs
carry Iron ids, primary keys and statuses only (IRON_API.md, Part A item 11). This runs what
the app does with one customer, every logger captured from DEBUG up, and looks for each.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from django_iron_kyc import services
from django_iron_kyc.models import Customer, Identification
from django_iron_kyc.testing import FakeIron

EMAIL = "ada.lovelace@example.com"
NAME = "Ada Lovelace"
EXTERNAL_ID = "crm-ada-1815"
REVIEW_COMMENT = "Passport photo blurred: date of birth 10/12/1815 unreadable"


@pytest.mark.django_db(transaction=True)
def test_a_customers_whole_lifecycle_logs_no_personal_data(
    sandbox_iron: FakeIron,
    send_iron_webhook: Any,
    no_personal_data_in_logs: list[str],
    settings: Any,
) -> None:
    no_personal_data_in_logs += [EMAIL, NAME, EXTERNAL_ID, REVIEW_COMMENT]
    iron = sandbox_iron
    settings.IRON_KYC_POLL_FIRST_DELAY = 0  # due at once

    def deliver() -> None:
        for delivery in list(iron.outbox):
            assert send_iron_webhook(delivery).status_code == 200
        iron.outbox.clear()

    customer = services.create_customer(email=EMAIL, name=NAME, external_id=EXTERNAL_ID)
    first = services.start_identification(customer)  # the Celery task runs eagerly
    first.refresh_from_db()
    assert first.status == "Pending"
    iron.set_identification_status(first.iron_id, "Processed")
    deliver()
    iron.set_identification_status(first.iron_id, "PendingReview", notify=False)  # webhook lost
    assert services.poll_due_identifications().changed == 1
    iron.set_identification_status(first.iron_id, "Declined", review_comment=REVIEW_COMMENT)
    deliver()
    services.refresh_customer(customer)
    first.refresh_from_db()
    assert (first.status, first.review_comment) == ("Declined", REVIEW_COMMENT)

    second = services.start_identification(customer)
    services.sandbox_approve(second)
    deliver()
    customer.refresh_from_db()
    assert customer.status == "Active"

    assert services.export_customer(customer)["customer"]["email"] == EMAIL
    cleared = services.apply_retention(now=timezone.now() + timedelta(days=60))
    assert cleared.free_text_cleared == {"review_comments": 1}
    services.forget_customer(customer, archive_at_iron=True)
    deliver()  # Iron's webhooks about the archive, after the customer is forgotten
    assert not Customer.objects.exists()
    assert not Identification.objects.exists()
