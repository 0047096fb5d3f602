"""The identification admin: list, filters, read-only fields, refresh, the sandbox decisions."""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.admin.models import CHANGE
from django.urls import reverse
from django.utils import timezone

from django_iron_kyc.admin.display import identification_title
from django_iron_kyc.conf import iron_settings
from django_iron_kyc.models import Identification
from django_iron_kyc.testing.factories import IdentificationFactory

from .support import (
    SANDBOX_PATH,
    action_names,
    admin_log,
    change,
    changelist,
    customer_at_iron,
    field_texts,
    identification_at_iron,
    levels_of,
    local_customer,
    messages_of,
    post_action,
    refresh_url,
    sandbox_url,
    staff_client,
    tools_of,
)

pytestmark = pytest.mark.django_db

PRODUCTION_OFF = {"IRON_KYC_BASE_URL": "https://api.iron.xyz"}
SANDBOX_GUARDS = [
    pytest.param({"IRON_KYC_SANDBOX_ACTIONS": False}, id="setting-off"),
    pytest.param(PRODUCTION_OFF, id="production-host"),
    pytest.param(
        {**PRODUCTION_OFF, "IRON_KYC_SANDBOX_ACTIONS": True}, id="forced-on-production-host"
    ),
]


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


def test_identification_is_read_only_for_everyone_with_no_save_or_delete(admin_client):
    identification = IdentificationFactory(url="")

    page = admin_client.get(change("identification", identification.pk)).content.decode()
    response = admin_client.post(
        change("identification", identification.pk),
        {"status": "Approved", "iron_id": str(uuid.uuid4()), "url": "https://evil.example"},
    )
    delete = admin_client.get(
        reverse("admin:iron_kyc_identification_delete", args=[identification.pk])
    )

    assert str(identification.idempotency_key) in page
    assert 'name="status"' not in page
    assert 'value="Save' not in page  # neither Save nor Save and continue: nothing to save
    assert "deletelink" not in page
    assert admin_client.get(reverse("admin:iron_kyc_identification_add")).status_code == 403
    assert (response.status_code, delete.status_code) == (403, 403)
    assert "delete_selected" not in action_names(admin_client.get(changelist("identification")))
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
    assert identification_title(pending) in confirmation.content.decode()
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
    assert messages_of(response) == [
        f"Identification {str(decided.iron_id)[:8]} of {decided.customer.email} · Approved "
        "is not pending at Iron: nothing was sent."
    ]
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
    assert identification_title(first) in content
    assert "will be skipped" in content
    assert response.status_code == 302
    assert messages_of(response) == [
        "2 identifications approved in sandbox; 1 refused "
        f"({identification_title(decided)} is not pending at Iron)"
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


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("decision", ["approve", "decline"])
def test_sandbox_buttons_refused_without_the_view_permission(fake_iron, method, decision):
    client = staff_client("sandbox_decide")  # may decide, may not see identifications
    hidden = customer_at_iron(fake_iron, email="hidden@example.com")
    pending = identification_at_iron(fake_iron, hidden)

    response = getattr(client, method)(sandbox_url(decision, pending), {"post": "yes"})

    assert response.status_code == 403
    assert "hidden@example.com" not in response.content.decode()
    assert fake_iron.requests_to("POST", SANDBOX_PATH) == []
    pending.refresh_from_db()
    assert pending.status == "Pending"
    assert admin_log(pending) == []


def test_sandbox_buttons_work_with_the_change_permission_instead_of_view(fake_iron):
    client = staff_client("change_identification", "sandbox_decide")
    pending = identification_at_iron(fake_iron)

    confirmation = client.get(sandbox_url("approve", pending))
    response = client.post(sandbox_url("approve", pending), {"post": "yes"})

    assert confirmation.status_code == 200
    assert messages_of(response) == ["1 identification approved in sandbox"]


def test_unknown_statuses_show_as_iron_spelled_them(admin_client):
    customer = local_customer(1)
    customer.status = "UnderAudit"
    customer.save()
    identification = IdentificationFactory(customer=customer, status="ManualCheck")
    known = IdentificationFactory(status="PendingReview")

    def shown(url: str) -> list[str]:
        return field_texts(admin_client.get(url), "status_label")

    assert shown(change("identification", identification.pk)) == ["ManualCheck"]
    assert shown(change("identification", known.pk)) == ["Pending review"]
    assert shown(changelist("identification")) == ["Pending review", "ManualCheck"]
    # The customer's page: its own status, then its identifications' (the inline).
    assert shown(change("customer", customer.pk)) == ["UnderAudit", "ManualCheck"]
    assert "UnderAudit" in shown(changelist("customer"))


def test_identification_page_is_titled_by_person_and_status(admin_client):
    customer = local_customer(1, name="Ada Lovelace")
    identification = IdentificationFactory(customer=customer, status="PendingReview", with_edd=True)

    content = admin_client.get(change("identification", identification.pk)).content.decode()

    title = (
        f"Identification {str(identification.iron_id)[:8]} of Ada Lovelace &lt;c1@example.com&gt;"
        " · Pending review, with EDD"
    )
    assert f"<h2>{title}</h2>" in content
    assert f"<title>{title} | " in content
    breadcrumbs = re.search(r'<div class="breadcrumbs">(.*?)</div>', content, re.S).group(1)
    assert breadcrumbs.rstrip().endswith(title)


def test_identification_list_links_each_to_its_customer(admin_client):
    customer = local_customer(1, name="Ada Lovelace")
    IdentificationFactory(customer=customer)

    response = admin_client.get(changelist("identification"))

    assert field_texts(response, "customer_column") == ["Ada Lovelace"]
    assert f'<a href="{change("customer", customer.pk)}">' in response.content.decode()


def test_identification_list_filters_failed_and_stale_ones(admin_client):
    now = timezone.now()
    failed = IdentificationFactory(unconfirmed=True, failed_at=now, last_error="Iron said no")
    stale = IdentificationFactory(stale_at=now)
    IdentificationFactory()

    def results(**params: str) -> set[Identification]:
        return set(admin_client.get(changelist("identification"), params).context["cl"].result_list)

    assert results(attention="failed") == {failed}
    assert results(attention="stale") == {stale}
    assert results(attention="either") == {failed, stale}
    notes = field_texts(admin_client.get(changelist("identification")), "notes")
    assert sorted(notes) == ["-", "failed", "stale"]


def test_refresh_button_on_the_identification_page_refreshes_its_customer(admin_client, fake_iron):
    identification = identification_at_iron(fake_iron)
    fake_iron.set_identification_status(identification.iron_id, "Declined", notify=False)

    page = admin_client.get(change("identification", identification.pk))
    response = admin_client.post(refresh_url("identification", identification))

    assert tools_of(page) == [
        "Refresh from Iron",
        "Approve in sandbox",
        "Decline in sandbox",
        "History",
    ]
    assert response["Location"] == change("identification", identification.pk)
    assert messages_of(response) == ["1 customer refreshed from Iron"]
    identification.refresh_from_db()
    assert identification.status == "Declined"
