"""The customer admin: list, search, read-only fields, actions and the supersede button."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.admin.models import CHANGE
from django.contrib.auth import get_user_model
from django.urls import reverse

from django_iron_kyc.models import Customer, Identification
from django_iron_kyc.testing.factories import CustomerFactory, IdentificationFactory

from .support import (
    CREATE_PATH,
    action_names,
    admin_log,
    change,
    changelist,
    customer_at_iron,
    identification_at_iron,
    local_customer,
    messages_of,
    post_action,
    staff_client,
    start_url,
)

pytestmark = pytest.mark.django_db


def test_customer_changelist_shows_current_identification_and_its_status(admin_client):
    customer = local_customer(1, user=get_user_model().objects.create_user(username="ada"))
    IdentificationFactory(customer=customer, superseded=True)
    current = IdentificationFactory(customer=customer, status="PendingReview")

    content = admin_client.get(changelist("customer")).content.decode()

    assert str(customer.iron_id) in content
    assert "ada" in content
    assert f'href="{change("identification", current.pk)}"' in content
    assert str(current.iron_id) in content
    assert "Pending review" in content


@pytest.mark.parametrize(
    "term",
    ["grace@example", "Grace Hopper", "ext-42", "IRON_ID_PREFIX", "ghopper", "gh@users.example"],
)
def test_customer_search_finds_by_email_name_external_id_iron_id_and_user(admin_client, term):
    user = get_user_model().objects.create_user(username="ghopper", email="gh@users.example")
    target = Customer.objects.create(
        iron_id=uuid.uuid4(),
        email="grace@example.com",
        name="Grace Hopper",
        external_id="ext-42",
        user=user,
    )
    other = local_customer(2, name="Ada")
    if term == "IRON_ID_PREFIX":
        term = str(target.iron_id)[:13]

    response = admin_client.get(changelist("customer"), {"q": term})

    assert list(response.context["cl"].result_list) == [target]
    assert other not in response.context["cl"].result_list


def test_customer_filters_by_status_and_type(admin_client):
    active = local_customer(1, customer_type="Business")
    active.status = "Active"
    active.save()
    local_customer(2)

    by_status = admin_client.get(changelist("customer"), {"status__exact": "Active"})
    by_type = admin_client.get(changelist("customer"), {"customer_type__exact": "Business"})

    assert list(by_status.context["cl"].result_list) == [active]
    assert list(by_type.context["cl"].result_list) == [active]


def test_customer_admin_cannot_add_and_keeps_iron_fields_read_only(admin_client):
    customer = local_customer(1)
    user = get_user_model().objects.create_user(username="linked")

    assert admin_client.get(reverse("admin:iron_kyc_customer_add")).status_code == 403
    response = admin_client.post(
        change("customer", customer.pk),
        {
            "user": str(user.pk),
            "email": "changed@example.com",
            "status": "Active",
            "identifications-TOTAL_FORMS": "0",
            "identifications-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.user == user
    assert (customer.email, customer.status) == ("c1@example.com", "IdentificationRequired")


def test_start_identification_action_reports_started_and_refused_counts(
    admin_client, fake_iron, django_capture_on_commit_callbacks
):
    first, second = customer_at_iron(fake_iron), customer_at_iron(fake_iron)
    busy = identification_at_iron(fake_iron).customer

    with django_capture_on_commit_callbacks(execute=True):
        response = post_action(
            admin_client, "customer", "start_identification", [first, second, busy]
        )

    assert response.status_code == 302
    assert messages_of(response) == [
        f"2 identifications started; 1 refused (customer {busy} already has an "
        "identification in flight)"
    ]
    for customer in (first, second):
        identification = Identification.objects.get(customer=customer)
        assert identification.status == "Pending"
        assert str(identification.iron_id) in fake_iron.identifications
        assert identification.with_edd is False
        (entry,) = admin_log(customer)
        assert entry.action_flag == CHANGE
        assert "Started identification" in entry.get_change_message()
    assert busy.identifications.count() == 1
    assert admin_log(busy) == []
    assert len(fake_iron.requests_to("POST", CREATE_PATH)) == 2


def test_start_identification_action_refuses_a_customer_not_at_iron_yet(admin_client, fake_iron):
    not_at_iron = CustomerFactory(unconfirmed=True)

    response = post_action(admin_client, "customer", "start_identification", [not_at_iron])

    (message,) = messages_of(response)
    assert message.startswith(f"0 identifications started; 1 refused (Customer {not_at_iron} ")
    assert not_at_iron.identifications.count() == 0
    assert fake_iron.requests == []


def test_start_identification_with_edd_action_asks_iron_for_edd(
    admin_client, fake_iron, django_capture_on_commit_callbacks
):
    customer = customer_at_iron(fake_iron)

    with django_capture_on_commit_callbacks(execute=True):
        response = post_action(
            admin_client, "customer", "start_identification_with_edd", [customer]
        )

    assert messages_of(response) == ["1 identification started"]
    (request,) = fake_iron.requests_to("POST", CREATE_PATH)
    assert request.json == {"type": "Link", "with_edd": True}
    assert Identification.objects.get(customer=customer).with_edd is True


@pytest.mark.django_db(transaction=True)
def test_start_identification_action_reports_irons_refusal(admin_client, fake_iron):
    unknown_at_iron = local_customer(1)  # Iron answers 404 for this customer id

    response = post_action(admin_client, "customer", "start_identification", [unknown_at_iron])

    identification = Identification.objects.get(customer=unknown_at_iron)
    assert identification.failed_at is not None
    (message,) = messages_of(response)
    assert message.startswith("0 identifications started; 1 failed (")
    assert identification.last_error in message
    assert "Customer not found" in message


def test_refresh_from_iron_action_applies_irons_state_and_reports_failures(admin_client, fake_iron):
    identification = identification_at_iron(fake_iron)
    fake_iron.set_identification_status(identification.iron_id, "Approved", notify=False)
    unknown_at_iron = local_customer(2)
    not_at_iron = Customer.objects.create(email="new@example.com")

    response = post_action(
        admin_client,
        "customer",
        "refresh_from_iron",
        [identification.customer, unknown_at_iron, not_at_iron],
    )

    identification.refresh_from_db()
    assert identification.status == "Approved"
    (message,) = messages_of(response)
    assert message.startswith(
        f"1 customer refreshed from Iron; 1 refused ({not_at_iron} is not at Iron yet); "
        f"1 failed ({unknown_at_iron}: Iron answered 404: Customer not found"
    )


def test_supersede_button_shows_a_confirmation_that_explains_superseding(admin_client, fake_iron):
    pending = identification_at_iron(fake_iron)

    page = admin_client.get(change("customer", pending.customer.pk)).content.decode()
    confirmation = admin_client.get(start_url(pending.customer)).content.decode()

    assert f'href="{start_url(pending.customer)}"' in page
    assert "Start a new identification (supersedes the one in flight)" in page
    assert "supersedes" in confirmation
    assert str(pending.iron_id) in confirmation
    assert "stops counting, even if it is approved later" in confirmation
    assert fake_iron.requests_to("POST", CREATE_PATH) == []
    pending.refresh_from_db()
    assert pending.superseded_at is None


def test_supersede_button_starts_a_new_identification_and_logs_it(
    admin_client, fake_iron, django_capture_on_commit_callbacks
):
    pending = identification_at_iron(fake_iron)
    customer = pending.customer

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(start_url(customer), {"post": "yes"})

    assert response.status_code == 302
    assert response["Location"] == change("customer", customer.pk)
    pending.refresh_from_db()
    assert pending.superseded_at is not None
    new = customer.identifications.exclude(pk=pending.pk).get()
    assert new.status == "Pending"
    assert new.iron_id is not None
    assert fake_iron.is_superseded(pending.iron_id)
    (message,) = messages_of(response)
    assert message.startswith("Identification ")
    assert message.endswith(f" started for {customer}.")
    (entry,) = admin_log(customer)
    assert "superseding" in entry.get_change_message()
    assert entry.user.is_superuser


def test_supersede_button_needs_change_permission(fake_iron):
    client = staff_client("view_customer", "view_identification")
    pending = identification_at_iron(fake_iron)

    page = client.get(change("customer", pending.customer.pk))
    get = client.get(start_url(pending.customer))
    post = client.post(start_url(pending.customer), {"post": "yes"})

    assert page.status_code == 200
    assert "Start a new identification" not in page.content.decode()
    assert (get.status_code, post.status_code) == (403, 403)
    assert pending.customer.identifications.count() == 1
    assert fake_iron.requests_to("POST", CREATE_PATH) == []


def test_customer_actions_need_change_permission_except_refresh(fake_iron):
    client = staff_client("view_customer")
    local_customer(1)

    names = action_names(client.get(changelist("customer")))

    assert names == {"refresh_from_iron"}
