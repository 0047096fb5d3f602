"""The customer admin: list, search, read-only fields, actions and the supersede button."""

from __future__ import annotations

import re
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
    field_texts,
    identification_at_iron,
    local_customer,
    messages_of,
    post_action,
    refresh_url,
    staff_client,
    start_url,
    tools_of,
)

pytestmark = pytest.mark.django_db


def test_customer_changelist_shows_person_status_and_current_identification(admin_client):
    customer = local_customer(
        1, name="Ada Lovelace", user=get_user_model().objects.create_user(username="ada")
    )
    IdentificationFactory(customer=customer, superseded=True)
    current = IdentificationFactory(customer=customer, status="PendingReview")

    response = admin_client.get(changelist("customer"))

    content = response.content.decode()
    assert field_texts(response, "customer") == ["Ada Lovelace <c1@example.com>"]
    assert field_texts(response, "status_label") == ["Identification required"]
    assert field_texts(response, "current_identification_link") == [
        f"{str(current.iron_id)[:8]} · Pending review"
    ]
    assert f'href="{change("identification", current.pk)}"' in content
    assert field_texts(response, "user") == ["ada"]
    assert str(customer.iron_id) not in content  # short ids only: the list fits the screen


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


def test_customer_admin_keeps_iron_fields_read_only_and_never_deletes(admin_client):
    customer = local_customer(1)
    user = get_user_model().objects.create_user(username="linked")

    page = admin_client.get(change("customer", customer.pk)).content.decode()
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
    delete = admin_client.get(reverse("admin:iron_kyc_customer_delete", args=[customer.pk]))

    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.user == user  # the link to this site's user is ours to change
    assert (customer.email, customer.status) == ("c1@example.com", "IdentificationRequired")
    # Deleting here would not delete the customer at Iron: no button, no action, no page.
    assert "deletelink" not in page
    assert delete.status_code == 403
    assert "delete_selected" not in action_names(admin_client.get(changelist("customer")))
    assert Customer.objects.filter(pk=customer.pk).exists()


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
        f"2 identifications started; 1 refused (customer {busy.email} already has an "
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
        "1 customer refreshed from Iron; 1 refused (new@example.com is not at Iron yet); "
        f"1 failed ({unknown_at_iron.name} <{unknown_at_iron.email}>: Iron answered 404: "
        "Customer not found"
    )


def test_supersede_button_shows_a_confirmation_that_explains_superseding(admin_client, fake_iron):
    pending = identification_at_iron(fake_iron)

    page = admin_client.get(change("customer", pending.customer.pk))
    confirmation = admin_client.get(start_url(pending.customer)).content.decode()

    assert f'href="{start_url(pending.customer)}"' in page.content.decode()
    assert tools_of(page) == [
        "Start a new identification (supersedes the one in flight)",
        "Refresh from Iron",
        "History",
    ]
    assert "supersedes" in confirmation
    assert str(pending.iron_id)[:8] in confirmation
    assert "stops counting, even if it is approved later" in confirmation
    assert 'name="supersede" value="yes"' in confirmation
    assert fake_iron.requests_to("POST", CREATE_PATH) == []
    pending.refresh_from_db()
    assert pending.superseded_at is None


def test_start_button_says_start_when_nothing_is_in_flight(
    admin_client, fake_iron, django_capture_on_commit_callbacks
):
    customer = customer_at_iron(fake_iron, email="ada@example.com", name="Ada Lovelace")
    identification_at_iron(fake_iron, customer, status="Declined")

    page = admin_client.get(change("customer", customer.pk))
    confirmation = admin_client.get(start_url(customer)).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(start_url(customer), {"post": "yes"})

    assert tools_of(page) == ["Start an identification", "Refresh from Iron", "History"]
    assert "supersede" not in confirmation
    assert "Yes, start an identification" in confirmation
    new = customer.identifications.get(status="Pending")
    # The message is written before the commit that sends the creation to Iron.
    assert messages_of(response) == [
        f"Identification intent #{new.pk} started for Ada Lovelace <ada@example.com> "
        "(not at Iron yet)."
    ]


def test_start_button_never_supersedes_what_the_confirmation_did_not_show(admin_client, fake_iron):
    customer = customer_at_iron(fake_iron)
    confirmation = admin_client.get(start_url(customer)).content.decode()
    assert 'name="supersede"' not in confirmation
    meanwhile = identification_at_iron(fake_iron, customer)  # started elsewhere meanwhile

    response = admin_client.post(start_url(customer), {"post": "yes"})

    (message,) = messages_of(response)
    assert message.startswith("No identification started: customer ")
    assert message.endswith("already has an identification in flight")
    meanwhile.refresh_from_db()
    assert meanwhile.superseded_at is None
    assert customer.identifications.count() == 1


def test_supersede_button_starts_a_new_identification_and_logs_it(
    admin_client, fake_iron, django_capture_on_commit_callbacks
):
    pending = identification_at_iron(fake_iron)
    customer = pending.customer

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(start_url(customer), {"post": "yes", "supersede": "yes"})

    assert response.status_code == 302
    assert response["Location"] == change("customer", customer.pk)
    pending.refresh_from_db()
    assert pending.superseded_at is not None
    new = customer.identifications.exclude(pk=pending.pk).get()
    assert new.status == "Pending"
    assert new.iron_id is not None
    assert fake_iron.is_superseded(pending.iron_id)
    (message,) = messages_of(response)
    assert message == (
        f"Identification intent #{new.pk} started for {customer.email} (not at Iron yet)."
    )
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
    assert tools_of(page) == ["Refresh from Iron", "History"]
    assert (get.status_code, post.status_code) == (403, 403)
    assert pending.customer.identifications.count() == 1
    assert fake_iron.requests_to("POST", CREATE_PATH) == []


def test_customer_actions_need_change_permission_except_refresh_and_export(fake_iron):
    client = staff_client("view_customer")
    local_customer(1)

    names = action_names(client.get(changelist("customer")))

    assert names == {"refresh_from_iron", "export_as_json"}


# --- the customer's page -------------------------------------------------------------------


def test_customer_page_is_titled_by_person_and_status(admin_client):
    customer = local_customer(1, name="Ada Lovelace")

    response = admin_client.get(change("customer", customer.pk))

    content = response.content.decode()
    title = "Ada Lovelace &lt;c1@example.com&gt; · Identification required"
    assert f"<title>{title} | " in content
    assert f"<h2>{title}</h2>" in content
    breadcrumbs = re.search(r'<div class="breadcrumbs">(.*?)</div>', content, re.S).group(1)
    assert breadcrumbs.rstrip().endswith(title)
    assert str(customer.iron_id) not in breadcrumbs


def test_customer_page_keeps_plumbing_in_a_collapsed_technical_section(admin_client):
    customer = local_customer(1)

    content = admin_client.get(change("customer", customer.pk)).content.decode()

    technical = re.search(
        r'<fieldset class="module aligned collapse"[^>]*>(.*?)</fieldset>', content, re.S
    )
    assert technical is not None
    assert "Technical" in technical.group(1)
    assert str(customer.idempotency_key) in technical.group(1)
    assert str(customer.iron_id) in technical.group(1)


def test_refresh_button_on_the_customer_page_refreshes_from_iron(admin_client, fake_iron):
    identification = identification_at_iron(fake_iron)
    customer = identification.customer
    fake_iron.set_identification_status(identification.iron_id, "Approved", notify=False)

    page = admin_client.get(change("customer", customer.pk)).content.decode()
    get = admin_client.get(refresh_url("customer", customer))
    response = admin_client.post(refresh_url("customer", customer))

    assert f'<form method="post" action="{refresh_url("customer", customer)}">' in page
    assert get.status_code == 405  # refreshing changes state: POST only
    assert response.status_code == 302
    assert response["Location"] == change("customer", customer.pk)
    assert messages_of(response) == ["1 customer refreshed from Iron"]
    identification.refresh_from_db()
    assert identification.status == "Approved"


def test_refresh_button_needs_the_view_permission(fake_iron):
    client = staff_client("view_identification")
    customer = customer_at_iron(fake_iron)

    response = client.post(refresh_url("customer", customer))

    assert response.status_code == 403
    assert fake_iron.requests == []


# --- creating a customer at Iron -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_staff_create_a_customer_at_iron_from_the_admin(admin_client, fake_iron):
    user = get_user_model().objects.create_user(username="ada")

    form = admin_client.get(reverse("admin:iron_kyc_customer_add")).content.decode()
    response = admin_client.post(
        reverse("admin:iron_kyc_customer_add"),
        {
            "email": "ada@example.com",
            "name": "Ada Lovelace",
            "customer_type": "Person",
            "external_id": "ext-1",
            "user": str(user.pk),
        },
    )

    assert 'value="Create at Iron"' in form
    assert "Iron keeps its customers" in form
    customer = Customer.objects.get()
    assert response.status_code == 302
    assert response["Location"] == change("customer", customer.pk)
    assert (customer.user, customer.status) == (user, "IdentificationRequired")
    assert str(customer.iron_id) in fake_iron.customers
    (request,) = fake_iron.requests_to("POST", r"^/api/customers$")
    assert request.json["email"] == "ada@example.com"
    assert request.headers["Idempotency-Key"] == str(customer.idempotency_key)
    assert messages_of(response) == [
        "Customer Ada Lovelace <ada@example.com> created at Iron (Identification required). "
        "Start an identification from here."
    ]
    (entry,) = admin_log(customer)
    assert entry.is_addition()
    assert entry.user.is_superuser


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"status": 400}, "Iron answered 400"),
        ({"drop": "before"}, "Iron could not be reached"),
    ],
)
def test_create_customer_says_why_iron_did_not_create_it(admin_client, fake_iron, fault, reason):
    fake_iron.fail_next(path=r"^/api/customers$", **fault)

    response = admin_client.post(
        reverse("admin:iron_kyc_customer_add"),
        {"email": "ada@example.com", "customer_type": "Person", "user": ""},
    )

    assert response.status_code == 200  # the form again, with the reason
    content = response.content.decode()
    assert reason in content
    (message,) = messages_of(response)
    assert message.startswith(f"The customer was not created at Iron: {reason}")
    assert not Customer.objects.filter(iron_id__isnull=False).exists()


def test_create_customer_refuses_a_user_who_already_is_a_customer_at_iron(admin_client, fake_iron):
    user = get_user_model().objects.create_user(username="ada")
    local_customer(1, user=user, name="Ada")

    response = admin_client.post(
        reverse("admin:iron_kyc_customer_add"),
        {"email": "ada@example.com", "customer_type": "Person", "user": str(user.pk)},
    )

    assert response.status_code == 200
    assert "This user already is a customer at Iron: Ada &lt;c1@example.com&gt;." in (
        response.content.decode()
    )
    assert fake_iron.requests == []


def test_create_customer_needs_the_add_permission(fake_iron):
    client = staff_client("view_customer", "change_customer")

    page = client.get(reverse("admin:iron_kyc_customer_add"))
    post = client.post(
        reverse("admin:iron_kyc_customer_add"),
        {"email": "a@example.com", "customer_type": "Person"},
    )

    assert (page.status_code, post.status_code) == (403, 403)
    assert fake_iron.requests == []


def test_customer_page_saves_the_user_link_with_its_identifications_listed(admin_client):
    customer = local_customer(1)
    IdentificationFactory(customer=customer, declined=True)
    IdentificationFactory(customer=customer)
    user = get_user_model().objects.create_user(username="linked")
    page = admin_client.get(change("customer", customer.pk)).content.decode()
    # What the browser sends back: every input of the form as rendered (the inline's
    # management form and row ids included), with the user chosen.
    form = re.search(r'<form [^>]*id="customer_form"[^>]*>(.*?)</form>', page, re.S).group(1)
    data = {
        name: value
        for name, value in re.findall(r'<input [^>]*name="([^"]+)"[^>]*value="([^"]*)"', form)
        if not name.startswith("_")
    }
    data["user"] = str(user.pk)

    response = admin_client.post(change("customer", customer.pk), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    customer.refresh_from_db()
    assert customer.user == user
    assert customer.identifications.count() == 2
