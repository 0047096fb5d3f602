"""``GET iron_kyc:verification``: every phase, the body's keys, privacy, ETag and the schema."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from django_iron_kyc.api.serializers import VerificationStatusSerializer
from django_iron_kyc.api.views import VerificationView
from django_iron_kyc.models import Customer, Identification
from django_iron_kyc.services.verification import Phase, Reason, VerificationStatus
from django_iron_kyc.testing.factories import CustomerFactory, IdentificationFactory

pytestmark = pytest.mark.django_db

KEYS = ["phase", "can_start", "hosted_url", "identification", "customer_status", "can_retry"]


def status_of(client: APIClient, **query: Any) -> dict[str, Any]:
    response = client.get(reverse("iron_kyc:verification"), query)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def test_a_user_without_a_customer_has_not_started_and_gets_exactly_the_documented_keys(api):
    assert status_of(api) == {
        "phase": "not_started",
        "can_start": True,
        "hosted_url": None,
        "identification": None,
        "customer_status": None,
        "can_retry": None,
        "reasons": [],
    }


def test_a_customer_at_iron_without_an_identification_has_not_started(api, user):
    CustomerFactory(user=user)

    body = status_of(api)

    assert body["phase"] == "not_started"
    assert body["can_start"] is True
    assert body["customer_status"] == "IdentificationRequired"
    assert body["identification"] is None


def test_in_progress_gives_the_hosted_url_and_irons_identification(api, user):
    identification = IdentificationFactory(customer=CustomerFactory(user=user))

    body = status_of(api)

    assert body["phase"] == "in_progress"
    assert body["can_start"] is False
    assert body["hosted_url"] == identification.url
    assert body["identification"] == {
        "id": str(identification.iron_id),
        "status": "Pending",
        "created_at": identification.iron_created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": identification.iron_updated_at.isoformat().replace("+00:00", "Z"),
    }
    assert list(body) == [*KEYS, "reasons"]


@pytest.mark.parametrize(
    ("traits", "phase", "can_start"),
    [
        ({"unconfirmed": True}, "starting", False),
        ({"url": ""}, "starting", False),
        ({"processed": True}, "in_review", False),
        ({"status": "PendingReview"}, "in_review", False),
        ({"status": "SomethingNew"}, "in_review", False),
        ({"approved": True}, "approved", False),
        ({"declined": True}, "declined", True),
        ({"expired": True}, "expired", True),
        ({"status": "Archived"}, "expired", True),
        ({"unconfirmed": True, "failed_at": timezone.now()}, "unavailable", True),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_identification_state_has_its_phase(api, user, traits, phase, can_start):
    IdentificationFactory(customer=CustomerFactory(user=user), **traits)

    body = status_of(api)

    assert (body["phase"], body["can_start"]) == (phase, can_start)
    assert body["hosted_url"] is None
    assert (body["identification"] is None) == (traits.get("unconfirmed") is True)


def test_a_customer_being_created_at_iron_is_starting_until_that_request_has_timed_out(api, user):
    customer = CustomerFactory(user=user, unconfirmed=True)

    assert status_of(api)["phase"] == "starting"
    assert status_of(api)["can_start"] is False

    Customer.objects.filter(pk=customer.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    assert (status_of(api)["phase"], status_of(api)["can_start"]) == ("not_started", True)


def test_a_customer_iron_could_not_create_is_unavailable_and_may_start_again(api, user):
    CustomerFactory(user=user, unconfirmed=True, last_error="Could not reach Iron")

    body = status_of(api)

    assert (body["phase"], body["can_start"], body["customer_status"]) == (
        "unavailable",
        True,
        None,
    )


def test_an_archived_customer_is_unavailable_for_good(api, user):
    IdentificationFactory(customer=CustomerFactory(user=user, status="Archived"), declined=True)

    body = status_of(api)

    assert (body["phase"], body["can_start"], body["customer_status"]) == (
        "unavailable",
        False,
        "Archived",
    )


def test_the_current_identification_is_never_a_superseded_one(api, user):
    customer = CustomerFactory(user=user)
    current = IdentificationFactory(customer=customer, processed=True)
    IdentificationFactory(customer=customer, superseded=True)  # newer, but replaced

    body = status_of(api)

    assert body["identification"]["id"] == str(current.iron_id)
    assert body["phase"] == "in_review"


def test_only_superseded_identifications_read_as_not_started(api, user):
    IdentificationFactory(customer=CustomerFactory(user=user), superseded=True)

    assert status_of(api)["phase"] == "not_started"


def test_a_hosted_url_that_is_not_http_is_never_handed_out(api, user):
    IdentificationFactory(customer=CustomerFactory(user=user), url="javascript:alert(1)")

    body = status_of(api)

    assert (body["phase"], body["hosted_url"]) == ("starting", None)


def test_action_required_and_the_requirements_fields_render_as_documented():
    # Issue 19 (requirements, step-up) produces these; the body already has their shape.
    status = VerificationStatus(
        Phase.ACTION_REQUIRED,
        can_start=True,
        customer_status="IdentificationRequired",
        can_retry=True,
        reasons=(Reason("SCREENSHOTS", "Upload the original document."),),
    )

    assert VerificationStatusSerializer(status).data == {
        "phase": "action_required",
        "can_start": True,
        "hosted_url": None,
        "identification": None,
        "customer_status": "IdentificationRequired",
        "can_retry": True,
        "reasons": [{"code": "SCREENSHOTS", "description": "Upload the original document."}],
    }


# --- only the signed-in user --------------------------------------------------------------


def test_another_users_verification_is_never_visible_whatever_the_query(api, user, make_user):
    grace = make_user("grace")
    theirs = IdentificationFactory(customer=CustomerFactory(user=grace))

    for query in ({}, {"user": grace.pk}, {"customer": theirs.customer.pk}, {"id": theirs.pk}):
        body = status_of(api, **query)
        assert body["phase"] == "not_started"
        assert body["identification"] is None
    assert theirs.url not in api.get(reverse("iron_kyc:verification")).content.decode()


def test_get_changes_nothing_and_asks_iron_nothing(api, user, iron):
    customer = CustomerFactory(user=user, unconfirmed=True, last_error="down")
    IdentificationFactory(customer=CustomerFactory(), unconfirmed=True)

    status_of(api)

    assert Customer.objects.count() == 2
    assert Identification.objects.count() == 1
    customer.refresh_from_db()
    assert customer.iron_id is None
    assert iron.requests == []


# --- conditional GET -----------------------------------------------------------------------


def test_a_poll_that_changed_nothing_is_a_304_from_one_query(api, user):
    identification = IdentificationFactory(customer=CustomerFactory(user=user))
    url = reverse("iron_kyc:verification")
    first = api.get(url)
    etag = first["ETag"]
    assert etag.startswith('W/"')
    assert first["Cache-Control"] == "private, no-cache"
    assert {"Accept", "Authorization", "Cookie"} <= {v.strip() for v in first["Vary"].split(",")}

    with CaptureQueriesContext(connection) as queries:
        again = api.get(url, headers={"If-None-Match": etag})

    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == etag
    ours = [q["sql"] for q in queries.captured_queries if "iron_kyc_" in q["sql"]]
    assert len(ours) == 1, ours

    Identification.objects.filter(pk=identification.pk).update(status="Processed")
    changed = api.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed["ETag"] != etag
    assert changed.json()["phase"] == "in_review"


# --- the schema ----------------------------------------------------------------------------


def test_drf_schema_describes_the_answers_and_the_post_body():
    schema = VerificationView().schema
    path = reverse("iron_kyc:verification")

    answer = schema.map_serializer(schema.get_response_serializer(path, "GET"))
    body = schema.map_serializer(schema.get_request_serializer(path, "POST"))

    fields = answer["properties"]
    assert [name for name in fields if not fields[name].get("writeOnly")] == [*KEYS, "reasons"]
    assert fields["phase"]["enum"] == list(Phase.values)
    assert fields["identification"]["nullable"] is True
    assert [name for name, f in body["properties"].items() if not f.get("readOnly")] == ["with_edd"]
