"""The customer admin's personal-data actions: export as JSON, and forget behind its own
permission with a confirmation page."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.admin.models import DELETION, LogEntry

from django_iron_kyc.models import Customer, Identification
from django_iron_kyc.testing.factories import IdentificationFactory
from tests.accounts.models import Payout

from .support import (
    action_names,
    admin_log,
    changelist,
    customer_at_iron,
    identification_at_iron,
    local_customer,
    messages_of,
    post_action,
    staff_client,
)

pytestmark = pytest.mark.django_db

ARCHIVE_PATH = r"^/api/customers/[^/]+/archive$"


def archive_box(page: str) -> str:
    (box,) = re.findall(r'<input type="checkbox" name="archive_at_iron"[^>]*>', page)
    return box


# --- export -----------------------------------------------------------------------------------


def test_export_downloads_everything_about_one_customer_as_json(admin_client):
    customer = local_customer(1, name="Ada Lovelace")
    IdentificationFactory(customer=customer, declined=True)

    response = post_action(admin_client, "customer", "export_as_json", [customer])

    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == (
        f'attachment; filename="iron-kyc-customer-{customer.iron_id}.json"'
    )
    exported = json.loads(response.content)
    assert exported["customer"]["email"] == "c1@example.com"
    assert exported["customer"]["name"] == "Ada Lovelace"
    assert len(exported["identifications"]) == 1
    assert [e.change_message for e in admin_log(customer)] == ["Exported as JSON."]


def test_export_of_several_customers_is_a_list(admin_client):
    customers = [local_customer(1), local_customer(2)]

    response = post_action(admin_client, "customer", "export_as_json", customers)

    exported = json.loads(response.content)
    assert sorted(e["customer"]["email"] for e in exported) == ["c1@example.com", "c2@example.com"]
    assert 'filename="iron-kyc-customers.json"' in response["Content-Disposition"]


def test_export_needs_only_the_view_permission():
    client = staff_client("view_customer")
    customer = local_customer(1)

    response = post_action(client, "customer", "export_as_json", [customer])

    assert json.loads(response.content)["customer"]["id"] == customer.pk


# --- forget -----------------------------------------------------------------------------------


def test_forget_is_offered_only_with_its_own_permission():
    local_customer(1)
    without = staff_client("view_customer", "change_customer", username="editor")
    with_it = staff_client("view_customer", "forget_customer", username="privacy")

    assert "forget_customers" not in action_names(without.get(changelist("customer")))
    assert "forget_customers" in action_names(with_it.get(changelist("customer")))


@pytest.mark.parametrize("post", [None, "yes"])
def test_a_forged_forget_without_the_permission_is_refused(post):
    client = staff_client("view_customer", "change_customer")
    customer = local_customer(1)
    extra = {"post": post} if post else {}

    response = post_action(client, "customer", "forget_customers", [customer], **extra)

    assert response.status_code == 403
    assert Customer.objects.filter(pk=customer.pk).exists()


def test_forget_asks_first_with_the_counts_and_an_unticked_archive_box(admin_client, fake_iron):
    ada = customer_at_iron(fake_iron, email="ada@example.com")
    identification_at_iron(fake_iron, ada)
    bob = local_customer(2)

    response = post_action(admin_client, "customer", "forget_customers", [ada, bob])

    page = response.content.decode()
    assert response.status_code == 200
    assert "Forget these customers?" in page
    rows = re.findall(r'<tr class="iron-kyc-forget-row">(.*?)</tr>', page, re.S)
    cells = [re.findall(r"<td>([^<]*)</td>", row) for row in rows]
    counts = {("ada@" in name, "c2@" in name): numbers for name, *numbers in cells}
    assert counts == {(True, False): ["1", "0", "0"], (False, True): ["0", "0", "0"]}
    assert "also archive at Iron (irreversible)" in page
    assert "checked" not in archive_box(page)
    assert Customer.objects.count() == 2
    assert fake_iron.requests_to("PUT", ARCHIVE_PATH) == []


def test_confirming_forgets_them_here_only_and_logs_who_did_it(admin_client, fake_iron):
    ada = customer_at_iron(fake_iron, email="ada@example.com")
    identification_at_iron(fake_iron, ada)

    response = post_action(admin_client, "customer", "forget_customers", [ada], post="yes")

    assert response.status_code == 302
    assert messages_of(response) == ["1 customer forgotten"]
    assert not Customer.objects.exists()
    assert not Identification.objects.exists()
    assert fake_iron.requests_to("PUT", ARCHIVE_PATH) == []
    (entry,) = LogEntry.objects.filter(action_flag=DELETION)
    assert entry.user.username == "admin"
    assert entry.change_message == "Forgotten."
    assert "ada@example.com" not in " ".join(LogEntry.objects.values_list("object_repr", flat=True))


def test_ticking_the_box_archives_at_iron_too(admin_client, fake_iron):
    ada = customer_at_iron(fake_iron)

    response = post_action(
        admin_client, "customer", "forget_customers", [ada], post="yes", archive_at_iron="yes"
    )

    assert messages_of(response) == ["1 customer forgotten"]
    assert fake_iron.customers[str(ada.iron_id)]["status"] == "Archived"
    assert LogEntry.objects.get(action_flag=DELETION).change_message == (
        "Forgotten; archived at Iron."
    )


def test_a_customer_iron_refuses_to_archive_is_kept_and_the_reason_shown(admin_client, fake_iron):
    ada = customer_at_iron(fake_iron, email="ada@example.com")
    bob = customer_at_iron(fake_iron, email="bob@example.com")
    fake_iron.fail_next(status=403, path=str(ada.iron_id))

    response = post_action(
        admin_client, "customer", "forget_customers", [ada, bob], post="yes", archive_at_iron="yes"
    )

    (message,) = messages_of(response)
    assert message.startswith("1 customer forgotten; 1 failed (ada@example.com: Iron answered 403")
    assert list(Customer.objects.all()) == [ada]
    assert not LogEntry.objects.filter(action_flag=DELETION, object_id=str(ada.pk)).exists()


def test_a_customer_your_rows_protect_is_refused_and_kept(admin_client):
    ada = local_customer(1)
    Payout.objects.create(customer=ada)

    response = post_action(admin_client, "customer", "forget_customers", [ada], post="yes")

    (message,) = messages_of(response)
    assert message.startswith("0 customers forgotten; 1 refused (")
    assert "c1@example.com>: Cannot delete" in message
    assert "'Payout.customer'" in message
    assert Customer.objects.filter(pk=ada.pk).exists()
    assert not LogEntry.objects.filter(action_flag=DELETION).exists()
