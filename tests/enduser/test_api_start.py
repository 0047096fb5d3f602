"""``POST iron_kyc:verification``: starting against the fake Iron, Iron down, bad requests,
who may call it, and the throttle."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from django_iron_kyc import services
from django_iron_kyc.exceptions import IronConfigurationError
from django_iron_kyc.models import Customer, Identification

# Transactions commit as in production: the creation task (eager) runs on commit.
pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMERS_PATH = r"^/api/customers$"
CREATE_PATH = r"^/api/customers/[^/]+/identifications/v2$"


def url() -> str:
    return reverse("iron_kyc:verification")


def start(client: APIClient, body: Any = None) -> Any:
    return client.post(url(), body or {}, format="json")


# --- starting -----------------------------------------------------------------------------


def test_post_creates_the_users_customer_then_starts_one_and_answers_201(api, user, iron):
    response = start(api)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["phase"] == "in_progress"
    assert body["can_start"] is False
    [identification] = Identification.objects.all()
    assert body["hosted_url"] == identification.url
    assert body["identification"]["id"] == str(identification.iron_id)
    assert body["customer_status"] == "IdentificationRequired"
    [created] = iron.requests_to("POST", CUSTOMERS_PATH)
    assert created.json == {
        "customer_type": "Person",
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "external_id": str(user.pk),
    }
    assert Customer.objects.get().user == user
    [posted] = iron.requests_to("POST", CREATE_PATH)
    assert posted.json == {"type": "Link"}
    assert response["ETag"] == api.get(url())["ETag"]


def test_post_starts_for_the_customer_the_user_has_at_iron(api, user, iron, mirror):
    customer = mirror.customer(user)

    assert start(api).status_code == 201

    assert iron.requests_to("POST", CUSTOMERS_PATH) == []
    assert Identification.objects.get().customer == customer


def test_a_second_click_answers_200_with_the_one_in_flight(api, iron):
    first = start(api)
    second = start(api)

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == first.json()
    assert len(iron.requests_to("POST", CREATE_PATH)) == 1
    assert len(iron.requests_to("POST", CUSTOMERS_PATH)) == 1


@pytest.mark.parametrize("status", ["Approved", "Processed", "PendingReview"])
def test_nothing_is_started_while_approved_or_in_review(api, user, iron, mirror, status):
    mirror.identification(mirror.customer(user), status=status)

    response = start(api)

    assert response.status_code == 200
    assert response.json()["can_start"] is False
    assert iron.requests_to("POST", CREATE_PATH) == []


@pytest.mark.parametrize("status", ["Declined", "Expired"])
def test_after_a_decline_or_expiry_a_new_one_is_started(api, user, iron, mirror, status):
    old = mirror.identification(mirror.customer(user), status=status)

    response = start(api)

    assert response.status_code == 201
    assert response.json()["phase"] == "in_progress"
    assert response.json()["identification"]["id"] != str(old.iron_id)


def test_a_user_without_email_gets_a_400_that_says_so_and_nothing_is_stored(iron, make_user):
    client = APIClient()
    client.force_login(make_user("noemail", email=""))

    response = start(client)

    assert response.status_code == 400
    assert response.json()["code"] == "email_required"
    assert "email" in response.json()["detail"]
    assert Customer.objects.count() == 0
    assert iron.requests == []


def test_the_customer_data_setting_decides_what_iron_gets(api, user, iron, settings):
    settings.IRON_KYC_VERIFICATION_CUSTOMER_DATA = lambda u: {
        "email": f"kyc+{u.username}@example.com",
        "name": "Lovelace Ltd",
        "customer_type": "Business",
        "external_id": f"account-{u.pk}",
    }

    assert start(api).status_code == 201

    [created] = iron.requests_to("POST", CUSTOMERS_PATH)
    assert created.json == {
        "customer_type": "Business",
        "email": "kyc+ada@example.com",
        "name": "Lovelace Ltd",
        "external_id": f"account-{user.pk}",
    }


@pytest.mark.parametrize(
    "returned",
    [
        ["ada@example.com"],
        {"email": "a@example.com", "phone": "1"},
        {"email": "a@b.c", "customer_type": "Robot"},
    ],
)
def test_customer_data_of_the_wrong_shape_is_a_configuration_error(api, iron, settings, returned):
    settings.IRON_KYC_VERIFICATION_CUSTOMER_DATA = lambda u: returned

    with pytest.raises(IronConfigurationError, match="IRON_KYC_VERIFICATION_CUSTOMER_DATA"):
        start(api)
    assert iron.requests == []


def test_with_edd_is_refused_unless_the_setting_allows_it(api, iron):
    response = start(api, {"with_edd": True})

    assert response.status_code == 400
    assert response.json()["code"] == "edd_not_allowed"
    assert iron.requests == []
    assert start(api, {"with_edd": "perhaps"}).status_code == 400


def test_with_edd_reaches_iron_where_allowed(api, iron, settings):
    settings.IRON_KYC_VERIFICATION_ALLOW_EDD = True

    assert start(api, {"with_edd": True}).status_code == 201

    [posted] = iron.requests_to("POST", CREATE_PATH)
    assert posted.json == {"type": "Link", "with_edd": True}
    assert Identification.objects.get().with_edd is True


# --- Iron down, Iron refusing --------------------------------------------------------------


def test_iron_down_while_creating_the_customer_is_a_503_and_the_retry_finishes_it(api, iron):
    iron.fail_next(status=503, path=CUSTOMERS_PATH)

    down = start(api)

    assert down.status_code == 503
    assert down["Retry-After"] == "30"
    assert down.json()["code"] == "iron_unavailable"
    customer = Customer.objects.get()
    assert customer.iron_id is None  # kept, with the key the retry sends again
    assert api.get(url()).json()["phase"] == "unavailable"

    again = start(api)

    assert again.status_code == 201
    assert again.json()["phase"] == "in_progress"
    first, second = iron.requests_to("POST", CUSTOMERS_PATH)
    assert first.idempotency_key == second.idempotency_key == str(customer.idempotency_key)
    assert len(iron.customers) == 1


def test_irons_retry_after_is_passed_on(api, iron):
    iron.fail_next(status=503, path=CUSTOMERS_PATH, retry_after=7)

    assert start(api)["Retry-After"] == "7"


def test_iron_down_while_creating_the_identification_leaves_it_starting_until_retried(api, iron):
    iron.fail_next(status=503, path=CREATE_PATH)

    response = start(api)

    assert response.status_code == 201  # the intent is stored; Celery's retry or the sweep sends it
    assert response.json()["phase"] == "starting"
    assert start(api).status_code == 200
    intent = Identification.objects.get()

    services.submit_identification(intent)  # what the retry runs

    body = api.get(url()).json()
    assert body["phase"] == "in_progress"
    assert len(iron.identifications) == 1


def test_iron_refusing_the_customer_answers_200_unavailable(api, iron):
    iron.fail_next(status=400, path=CUSTOMERS_PATH)

    response = start(api)

    assert response.status_code == 200
    assert (response.json()["phase"], response.json()["can_start"]) == ("unavailable", True)
    assert Identification.objects.count() == 0


def test_iron_refusing_the_identification_leaves_it_unavailable_and_startable(api, iron):
    iron.fail_next(status=403, path=CREATE_PATH)

    response = start(api)

    assert response.status_code == 201
    assert (response.json()["phase"], response.json()["can_start"]) == ("unavailable", True)
    assert start(api).json()["phase"] == "in_progress"


# --- who may call it -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_users_get_the_hosts_403_under_session_authentication(iron, method):
    response = getattr(APIClient(), method)(url())

    assert response.status_code == 403
    assert iron.requests == []


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_users_get_401_where_the_host_authenticates_by_header(iron, settings, method):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.BasicAuthentication"],
    }

    response = getattr(APIClient(), method)(url())

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")


def test_an_authenticated_user_is_required_whatever_the_hosts_default_permissions(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    }

    assert APIClient().get(url()).status_code == 403


def test_the_hosts_authentication_classes_apply(iron, settings, make_user):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.BasicAuthentication"],
    }
    make_user("grace", password="correct horse")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic Z3JhY2U6Y29ycmVjdCBob3JzZQ==")

    assert client.get(url()).json()["phase"] == "not_started"
    assert client.post(url()).status_code == 201  # no session: no CSRF token needed


def test_a_post_changes_only_the_signed_in_users_customer(api, user, iron, mirror, make_user):
    grace = make_user("grace")
    theirs = mirror.identification(mirror.customer(grace), status="Declined")

    assert start(api).status_code == 201

    assert Identification.objects.filter(customer=theirs.customer).count() == 1
    assert Customer.objects.get(user=user).pk != theirs.customer.pk


# --- throttle -------------------------------------------------------------------------------


def test_starting_is_throttled_per_user_and_polling_is_not(api, iron, settings, make_user):
    settings.IRON_KYC_VERIFICATION_THROTTLE_RATE = "2/hour"
    assert [start(api).status_code for _ in range(2)] == [201, 200]

    throttled = start(api)

    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert [api.get(url()).status_code for _ in range(5)] == [200] * 5
    other = APIClient()
    other.force_login(make_user("grace"))
    assert start(other).status_code == 201


def test_no_throttle_rate_lets_every_start_through(api, iron, settings):
    settings.IRON_KYC_VERIFICATION_THROTTLE_RATE = None

    assert {start(api).status_code for _ in range(25)} == {200, 201}


def test_the_hosts_default_throttles_do_not_apply(api, iron, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
        "DEFAULT_THROTTLE_RATES": {"user": "1/day", "anon": "1/day"},
    }

    assert [api.get(url()).status_code for _ in range(3)] == [200] * 3
    assert start(api).status_code == 201
