"""A double click, two tabs at once: one customer and one identification, here and at Iron.

On PostgreSQL (row locks, concurrent connections): each request on its own thread and
connection, released together by a barrier; a gate held at the fake Iron orders the one
scenario that needs an order. No sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from django_iron_kyc.models import Customer, Identification

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CUSTOMERS_PATH = r"^/api/customers$"
CREATE_PATH = r"^/api/customers/[^/]+/identifications/v2$"
ROUNDS = 3


def signed_in(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def json_start(client: APIClient) -> Callable[[], int]:
    return lambda: client.post(reverse("iron_kyc:verification")).status_code


def page_start(client: Any) -> Callable[[], int]:
    return lambda: client.post(reverse("iron_kyc:verify")).status_code


def once_held_at_iron(client: APIClient, gate: Any) -> Callable[[], Any]:
    """A POST sent once another request is held at the fake Iron; then Iron answers that one."""

    def tab() -> Any:
        assert gate.reached.wait(30), "the other request never reached Iron"
        response = client.post(reverse("iron_kyc:verification"))
        gate.set()
        return response

    return tab


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_tabs_at_once_for_a_new_user_make_one_customer_and_one_identification(
    iron, make_user, together, round_
):
    user = make_user("ada")
    tabs = [signed_in(user) for _ in range(3)]

    answers = together(*(json_start(tab) for tab in tabs))

    assert sorted(answers) == [200, 200, 201], answers
    assert len(iron.requests_to("POST", CUSTOMERS_PATH)) == 1
    assert len(iron.requests_to("POST", CREATE_PATH)) == 1
    customer = Customer.objects.get(user=user)
    assert Identification.objects.in_flight().filter(customer=customer).count() == 1
    assert Identification.objects.count() == 1


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_double_click_on_the_page_and_a_post_from_the_app_start_one(
    iron, make_user, mirror, together, round_
):
    user = make_user("ada")
    mirror.customer(user)
    page, app = signed_in(user), signed_in(user)

    answers = together(page_start(page), page_start(page), json_start(app))

    assert sorted(answers[:2]) == [303, 303]
    assert answers[2] in (200, 201)
    assert len(iron.requests_to("POST", CREATE_PATH)) == 1
    assert Identification.objects.count() == 1


@pytest.mark.parametrize(
    ("earlier_outage", "phase"), [(False, "starting"), (True, "unavailable")], ids=["new", "retry"]
)
def test_a_tab_that_comes_while_the_customer_is_created_at_iron_answers_at_once(
    iron, make_user, together, gate, earlier_outage, phase
):
    user = make_user("ada")
    first, second = signed_in(user), signed_in(user)
    if earlier_outage:
        iron.fail_next(status=503, path=CUSTOMERS_PATH)
        assert first.post(reverse("iron_kyc:verification")).status_code == 503
    iron.fail_next(path=CUSTOMERS_PATH, delay=gate)  # the first tab's request is held at Iron

    first_answer, second_answer = together(json_start(first), once_held_at_iron(second, gate))

    assert first_answer == 201
    # The second tab sends nothing: the first holds the customer row while Iron answers.
    assert second_answer.status_code == 200
    assert second_answer.json()["phase"] == phase
    assert len(iron.requests_to("POST", CUSTOMERS_PATH)) == 1 + earlier_outage
    assert len(iron.customers) == 1
    assert Identification.objects.count() == 1
