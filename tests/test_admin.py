"""The admin: pages, actions, buttons and their guards, against the fake Iron.

Everything remote goes through the fake (``fake_iron``), so "nothing was sent to Iron" is
checked on the requests it recorded.
"""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any

import pytest
import responses
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_iron_kyc.conf import iron_settings
from django_iron_kyc.models import Customer, Identification, WebhookDelivery
from django_iron_kyc.services import RemoteIdentification, apply_identification_state
from django_iron_kyc.testing.events import build_event, encode_event
from django_iron_kyc.testing.factories import CustomerFactory, IdentificationFactory

pytestmark = pytest.mark.django_db

SANDBOX_PATH = r"^/api/sandbox/identification/"
CREATE_PATH = r"^/api/customers/[^/]+/identifications/v2$"

PRODUCTION_OFF = {"IRON_KYC_BASE_URL": "https://api.iron.xyz"}
SANDBOX_GUARDS = [
    pytest.param({"IRON_KYC_SANDBOX_ACTIONS": False}, id="setting-off"),
    pytest.param(PRODUCTION_OFF, id="production-host"),
    pytest.param(
        {**PRODUCTION_OFF, "IRON_KYC_SANDBOX_ACTIONS": True}, id="forced-on-production-host"
    ),
]


# --- helpers --------------------------------------------------------------------------


def customer_at_iron(fake: Any, **fields: Any) -> Customer:
    """A customer that exists at the fake Iron and here."""
    remote = fake.add_customer(**fields)
    return Customer.objects.create(
        iron_id=remote["id"],
        email=remote["email"],
        name=remote.get("name", ""),
        external_id=remote.get("external_id") or "",
        status=remote["status"],
    )


def identification_at_iron(
    fake: Any, customer: Customer | None = None, status: str = "Pending", **fields: Any
) -> Identification:
    """An identification that exists at the fake Iron and here, applied as a poll would."""
    customer = customer or customer_at_iron(fake)
    remote = fake.add_identification(str(customer.iron_id), status=status, **fields)
    identification = Identification.objects.create(customer=customer)
    apply_identification_state(
        identification, RemoteIdentification.from_api(remote), source="refresh"
    )
    identification.refresh_from_db()
    return identification


def local_customer(n: int, **fields: Any) -> Customer:
    """A customer known only here (the fake Iron has never heard of it)."""
    customer: Customer = CustomerFactory(email=f"c{n}@example.com", **fields)
    return customer


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def levels_of(response: Any) -> list[str]:
    return [m.level_tag for m in get_messages(response.wsgi_request)]


def staff_client(*codenames: str, username: str = "staff") -> Client:
    """A logged-in staff user (not superuser) holding exactly these iron_kyc permissions."""
    user = get_user_model().objects.create_user(
        username=username, email=f"{username}@example.com", password="pw", is_staff=True
    )
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="iron_kyc", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


def changelist(model: str) -> str:
    return reverse(f"admin:iron_kyc_{model}_changelist")


def change(model: str, pk: Any) -> str:
    return reverse(f"admin:iron_kyc_{model}_change", args=[pk])


def sandbox_url(decision: str, identification: Identification) -> str:
    return reverse(f"admin:iron_kyc_identification_sandbox_{decision}", args=[identification.pk])


def start_url(customer: Customer) -> str:
    return reverse("admin:iron_kyc_customer_start_identification", args=[customer.pk])


def post_action(client: Client, model: str, action: str, objs: list[Any], **extra: str) -> Any:
    data: dict[str, Any] = {
        "action": action,
        ACTION_CHECKBOX_NAME: [str(o.pk) for o in objs],
        **extra,
    }
    if "post" not in extra:
        data["index"] = "0"
    return client.post(changelist(model), data)


def action_names(response: Any) -> set[str]:
    return set(re.findall(r'<option value="([a-z_]+)"', response.content.decode()))


def admin_log(obj: Any) -> list[LogEntry]:
    return list(LogEntry.objects.filter(object_id=str(obj.pk)).order_by("pk"))


# --- pages and secrets ----------------------------------------------------------------


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


# --- customers ------------------------------------------------------------------------


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


# --- identifications ------------------------------------------------------------------


def test_identification_changelist_lists_filters_and_searches(admin_client):
    customer = local_customer(1)
    old = IdentificationFactory(customer=customer, superseded=True)
    current = IdentificationFactory(customer=customer, approved=True, with_edd=True)
    other = IdentificationFactory(customer=local_customer(2))

    def results(**params: str) -> list[Identification]:
        return list(
            admin_client.get(changelist("identification"), params).context["cl"].result_list
        )

    assert results(superseded="yes") == [old]
    assert set(results(superseded="no")) == {current, other}
    assert results(status__exact="Approved") == [current]
    assert results(q=str(old.iron_id)[:8]) == [old]
    assert set(results(q=str(customer.iron_id))) == {old, current}
    assert results(q=str(other.iron_id)) == [other]


def test_identification_hosted_url_is_a_link_opening_in_a_new_tab(admin_client):
    identification = IdentificationFactory(url="https://verify.example/abc?token=x&y=1")
    hostile = IdentificationFactory(url="javascript:alert(1)")

    content = admin_client.get(change("identification", identification.pk)).content.decode()
    hostile_content = admin_client.get(change("identification", hostile.pk)).content.decode()

    assert (
        '<a href="https://verify.example/abc?token=x&amp;y=1" target="_blank" '
        'rel="noopener noreferrer">'
    ) in content
    assert 'href="javascript:' not in hostile_content
    assert "javascript:alert(1)" in hostile_content


def test_identification_fields_from_iron_are_read_only(admin_client):
    identification = IdentificationFactory(url="")

    page = admin_client.get(change("identification", identification.pk)).content.decode()
    response = admin_client.post(
        change("identification", identification.pk),
        {"status": "Approved", "iron_id": str(uuid.uuid4()), "url": "https://evil.example"},
    )

    assert str(identification.idempotency_key) in page
    assert 'name="status"' not in page
    assert 'value="Save"' not in page
    assert admin_client.get(reverse("admin:iron_kyc_identification_add")).status_code == 403
    assert response.status_code == 302
    refreshed = Identification.objects.get(pk=identification.pk)
    assert (refreshed.status, refreshed.iron_id, refreshed.url) == (
        "Pending",
        identification.iron_id,
        "",
    )


def test_identification_refresh_action_refreshes_each_customer_once(admin_client, fake_iron):
    customer = customer_at_iron(fake_iron)
    first = identification_at_iron(fake_iron, customer, status="Declined")
    second = identification_at_iron(fake_iron, customer)
    fake_iron.set_identification_status(second.iron_id, "Approved", notify=False)

    response = post_action(admin_client, "identification", "refresh_from_iron", [first, second])

    assert messages_of(response) == ["1 customer refreshed from Iron (for 2 identifications)"]
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("Declined", "Approved")
    assert len(fake_iron.requests_to("GET", rf"^/api/customers/{customer.iron_id}$")) == 1


@pytest.mark.parametrize(("decision", "status"), [("approve", "Approved"), ("decline", "Declined")])
def test_sandbox_button_confirms_then_decides_at_iron_and_logs_it(
    admin_client, fake_iron, decision, status
):
    pending = identification_at_iron(fake_iron)
    label = f"{decision.capitalize()} in sandbox"

    page = admin_client.get(change("identification", pending.pk)).content.decode()
    confirmation = admin_client.get(sandbox_url(decision, pending))
    assert fake_iron.requests_to("POST", SANDBOX_PATH) == []
    response = admin_client.post(sandbox_url(decision, pending), {"post": "yes"})

    assert f'href="{sandbox_url(decision, pending)}"' in page
    assert label in page
    assert confirmation.status_code == 200
    assert str(pending.iron_id) in confirmation.content.decode()
    assert response.status_code == 302
    assert response["Location"] == change("identification", pending.pk)
    pending.refresh_from_db()
    assert pending.status == status
    (request,) = fake_iron.requests_to("POST", SANDBOX_PATH)
    assert request.path == f"/api/sandbox/identification/{pending.iron_id}"
    assert request.json == {"approved": decision == "approve"}
    assert messages_of(response) == [f"1 identification {decision}d in sandbox"]
    assert levels_of(response) == ["success"]
    (entry,) = admin_log(pending)
    assert entry.user.is_superuser
    assert entry.action_flag == CHANGE
    assert f"{decision.capitalize()}d in sandbox" in entry.get_change_message()


def test_sandbox_buttons_absent_on_a_decided_identification(admin_client, fake_iron):
    decided = identification_at_iron(fake_iron, status="Approved")

    page = admin_client.get(change("identification", decided.pk)).content.decode()
    response = admin_client.post(sandbox_url("decline", decided), {"post": "yes"})

    assert "in sandbox" not in page
    assert response.status_code == 302
    assert messages_of(response) == [f"{decided} is not pending at Iron: nothing was sent."]
    assert fake_iron.requests_to("POST", SANDBOX_PATH) == []


def test_sandbox_buttons_and_actions_for_staff_with_the_permission(fake_iron):
    client = staff_client("view_identification", "sandbox_decide")
    pending = identification_at_iron(fake_iron)

    page = client.get(change("identification", pending.pk)).content.decode()
    names = action_names(client.get(changelist("identification")))
    response = client.post(sandbox_url("approve", pending), {"post": "yes"})

    assert "Approve in sandbox" in page
    assert {"sandbox_approve", "sandbox_decline"} <= names
    assert messages_of(response) == ["1 identification approved in sandbox"]
    (entry,) = admin_log(pending)
    assert entry.user.username == "staff"


def test_sandbox_buttons_and_actions_absent_and_refused_without_the_permission(fake_iron):
    client = staff_client("view_identification", "change_identification")
    pending = identification_at_iron(fake_iron)

    page = client.get(change("identification", pending.pk)).content.decode()
    names = action_names(client.get(changelist("identification")))
    button_get = client.get(sandbox_url("approve", pending))
    button_post = client.post(sandbox_url("approve", pending), {"post": "yes"})
    action = post_action(client, "identification", "sandbox_approve", [pending], post="yes")
    action_first_step = post_action(client, "identification", "sandbox_decline", [pending])

    assert "in sandbox" not in page
    assert names == {"refresh_from_iron"}
    assert [r.status_code for r in (button_get, button_post, action, action_first_step)] == [
        403
    ] * 4
    assert fake_iron.requests_to("POST", SANDBOX_PATH) == []
    pending.refresh_from_db()
    assert pending.status == "Pending"
    assert admin_log(pending) == []


@pytest.mark.parametrize("guard", SANDBOX_GUARDS)
def test_sandbox_buttons_and_actions_absent_and_refused_when_sandbox_actions_are_off(
    admin_client, fake_iron, settings, guard
):
    pending = identification_at_iron(fake_iron)
    for name, value in guard.items():
        setattr(settings, name, value)
    assert not iron_settings.SANDBOX_ACTIONS

    page = admin_client.get(change("identification", pending.pk)).content.decode()
    names = action_names(admin_client.get(changelist("identification")))
    button_post = admin_client.post(sandbox_url("decline", pending), {"post": "yes"})
    action = post_action(admin_client, "identification", "sandbox_approve", [pending], post="yes")

    assert "in sandbox" not in page
    assert "sandbox_approve" not in names
    assert "sandbox_decline" not in names
    assert (button_post.status_code, action.status_code) == (403, 403)
    assert fake_iron.requests_to("POST", SANDBOX_PATH) == []
    pending.refresh_from_db()
    assert pending.status == "Pending"


def test_sandbox_action_confirms_first_then_reports_counts(admin_client, fake_iron):
    first, second = identification_at_iron(fake_iron), identification_at_iron(fake_iron)
    decided = identification_at_iron(fake_iron, status="Declined")
    selected = [first, second, decided]

    confirmation = post_action(admin_client, "identification", "sandbox_approve", selected)
    assert fake_iron.requests_to("POST", SANDBOX_PATH) == []
    response = post_action(admin_client, "identification", "sandbox_approve", selected, post="yes")

    content = confirmation.content.decode()
    assert confirmation.status_code == 200
    assert "Yes, approve in sandbox" in content
    assert str(first.iron_id) in content
    assert "will be skipped" in content
    assert response.status_code == 302
    assert messages_of(response) == [
        f"2 identifications approved in sandbox; 1 refused ({decided} is not pending at Iron)"
    ]
    assert levels_of(response) == ["warning"]
    assert (
        Identification.objects.filter(pk__in=[first.pk, second.pk], status="Approved").count() == 2
    )
    assert len(fake_iron.requests_to("POST", SANDBOX_PATH)) == 2
    assert len(admin_log(first)) == len(admin_log(second)) == 1
    assert admin_log(decided) == []


def test_sandbox_action_reports_irons_error_message(admin_client, fake_iron):
    stale = identification_at_iron(fake_iron)  # Iron decided; we have not heard yet
    fake_iron.set_identification_status(stale.iron_id, "Approved", notify=False)

    response = post_action(admin_client, "identification", "sandbox_decline", [stale], post="yes")

    (message,) = messages_of(response)
    assert message.startswith("0 identifications declined in sandbox; 1 failed (")
    assert "Iron answered 400: Identification is not pending (status Approved)" in message
    assert levels_of(response) == ["error"]
    assert admin_log(stale) == []


# --- webhook deliveries ---------------------------------------------------------------


def delivery_for(identification: Identification, status: str, **fields: Any) -> WebhookDelivery:
    event = build_event(
        "identification_status", identification.customer.iron_id, identification.iron_id, status
    )
    return WebhookDelivery.objects.create(
        webhook_id=fields.pop("webhook_id", f"msg_{uuid.uuid4().hex}"),
        event_type="identification_status",
        customer_iron_id=identification.customer.iron_id,
        object_iron_id=identification.iron_id,
        object_status=status,
        body=encode_event(event).decode(),
        **fields,
    )


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

    monkeypatch.setattr("django_iron_kyc.services.deliveries.act_on_event", explode)
    response = post_action(admin_client, "webhookdelivery", "reprocess", [delivery])

    assert messages_of(response) == [
        "0 deliveries reprocessed; 1 failed (msg_broken: RuntimeError: database on fire)"
    ]


# --- a constant number of queries per changelist --------------------------------------


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
