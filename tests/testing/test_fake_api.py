"""The fake's API routes (testing/fake/api.py): every rule it promises (IRON_API.md Part
A), over real HTTP: authentication, customers, identifications, one in flight, sandbox,
listing and error shapes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from django_iron_kyc.client import IronClient
from django_iron_kyc.exceptions import IronAPIError, IronTransientError
from django_iron_kyc.testing import FakeIron
from tests.testing.support import API_KEY, new_customer, new_identification, raw

# --- authentication ---------------------------------------------------------------------------


ENDPOINTS = [
    ("POST", "/api/customers", {"customer_type": "Person", "email": "a@example.com"}),
    ("GET", "/api/customers/{customer}", None),
    ("POST", "/api/customers/{customer}/identifications/v2", {"type": "Link"}),
    ("GET", "/api/customers/{customer}/identifications", None),
    ("GET", "/api/identifications/{identification}", None),
    ("POST", "/api/sandbox/identification/{identification}", {"approved": True}),
    ("PUT", "/api/customers/{customer}/archive", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
@pytest.mark.parametrize("api_key", [None, "", "wrong-key", API_KEY + "x"])
def test_every_endpoint_answers_401_plain_text_without_the_right_api_key(
    fake, method, path, body, api_key
):
    customer = fake.add_customer()
    identification = fake.add_identification(customer["id"])
    url = path.format(customer=customer["id"], identification=identification["id"])

    response = raw(fake, method, url, body=body, api_key=api_key)

    assert response.status_code == 401
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content == b"authorization error"
    assert len(fake.customers) == 1
    assert len(fake.identifications) == 1
    assert fake.identifications[identification["id"]]["status"] == "Pending"


def test_client_turns_the_401_into_an_api_error(fake):
    with (
        IronClient(api_key="revoked", base_url=fake.base_url, max_retries=0) as client,
        pytest.raises(IronAPIError) as caught,
    ):
        client.get_customer(uuid.uuid4())
    assert caught.value.status == 401
    assert caught.value.message == "authorization error"
    assert not isinstance(caught.value, IronTransientError)


# --- customers --------------------------------------------------------------------------------


def test_create_customer_answers_201_with_iron_customer_json(fake):
    response = raw(
        fake,
        "POST",
        "/api/customers",
        body={
            "customer_type": "Person",
            "email": "ada@example.com",
            "name": "Ada",
            "external_id": "u1",
        },
    )

    assert response.status_code == 201
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    customer = response.json()
    assert customer["status"] == "IdentificationRequired"
    assert customer["email"] == "ada@example.com"
    assert customer["name"] == "Ada"
    assert customer["external_id"] == "u1"
    assert customer["customer_type"] == "Person"
    assert customer["identification_ids"] == []
    assert customer["signing_ids"] == []
    assert uuid.UUID(customer["id"])
    assert customer["created_at"].endswith("Z")
    assert fake.customers[customer["id"]] == customer


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a@example.com"},
        {"customer_type": "Robot", "email": "a@example.com"},
        {"customer_type": "Person"},
        ["not", "an", "object"],
        b"{not json",
    ],
)
def test_create_customer_rejects_an_invalid_body_with_a_json_string(fake, body):
    response = raw(fake, "POST", "/api/customers", body=body)

    assert response.status_code == 400
    assert isinstance(response.json(), str)
    assert fake.customers == {}


def test_get_customer_answers_the_stored_customer(fake, client):
    customer = fake.add_customer(email="b@example.com", name="Bea")

    assert client.get_customer(customer["id"]) == customer


def test_get_unknown_customer_is_404_with_a_json_string(fake, client):
    response = raw(fake, "GET", f"/api/customers/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json() == "Customer not found"

    with pytest.raises(IronAPIError) as caught:
        client.get_customer(uuid.uuid4())
    assert caught.value.status == 404
    assert caught.value.message == "Customer not found"


def test_archive_customer_archives_it_and_its_identifications_and_sends_webhooks(fake, client):
    customer = fake.add_customer()
    identification = fake.add_identification(customer["id"])
    fake.outbox.clear()

    archived = client.archive_customer(customer["id"])

    assert archived["status"] == "Archived"
    assert fake.requests[-1].status == 200
    assert fake.identifications[identification["id"]]["status"] == "Archived"
    assert [(d.event["type"], d.event["data"]["customer_id"]) for d in fake.outbox] == [
        ("identification_status", customer["id"]),
        ("customer_status", customer["id"]),
    ]
    assert client.archive_customer(customer["id"]) == archived  # again: nothing changes


def test_archive_unknown_customer_is_404(client):
    with pytest.raises(IronAPIError) as caught:
        client.archive_customer(uuid.uuid4())
    assert caught.value.status == 404


def test_a_path_id_that_is_not_a_uuid_is_400(fake):
    response = raw(fake, "GET", "/api/customers/not-a-uuid")
    assert response.status_code == 400


def test_unknown_routes_are_404_and_wrong_methods_405(fake):
    assert raw(fake, "GET", "/api/customers/x/identifications/v3").status_code == 404
    assert raw(fake, "PUT", f"/api/customers/{uuid.uuid4()}").status_code == 405


# --- identifications --------------------------------------------------------------------------


def test_create_identification_answers_201_pending_with_a_hosted_url(fake, client):
    customer = new_customer(client)

    identification = new_identification(client, customer)

    assert identification["status"] == "Pending"
    assert identification["customer_id"] == customer["id"]
    assert identification["with_edd"] is False
    assert identification["url"].startswith(f"{fake.base_url}/verify/{identification['id']}")
    assert identification["created_at"] == identification["updated_at"]
    assert fake.identifications[identification["id"]] == identification
    assert fake.customers[customer["id"]]["identification_ids"] == [identification["id"]]
    assert fake.customers[customer["id"]]["identification_status"] == "Pending"
    request = fake.requests_to("POST", r"/identifications/v2$")[0]
    assert request.json == {"type": "Link"}


def test_create_identification_with_edd_is_stored(client):
    customer = new_customer(client)

    assert new_identification(client, customer, with_edd=True)["with_edd"] is True


@pytest.mark.parametrize(
    "body",
    [{"type": "Token", "token": "x"}, {"type": "Direct"}, {}, {"type": "Link", "with_edd": "yes"}],
)
def test_create_identification_accepts_only_link(fake, body):
    customer = fake.add_customer()

    response = raw(fake, "POST", f"/api/customers/{customer['id']}/identifications/v2", body=body)

    assert response.status_code == 400
    assert isinstance(response.json(), str)
    assert fake.identifications == {}


def test_create_identification_for_unknown_customer_is_404(client):
    with pytest.raises(IronAPIError) as caught:
        client.create_identification(uuid.uuid4(), idempotency_key=uuid.uuid4())
    assert caught.value.status == 404


def test_get_identification_and_404(fake, client):
    identification = fake.add_identification(fake.add_customer()["id"], review_comment="blurry")

    assert client.get_identification(identification["id"]) == identification
    with pytest.raises(IronAPIError) as caught:
        client.get_identification(uuid.uuid4())
    assert caught.value.status == 404
    assert caught.value.message == "Identification not found"


# --- one in flight: supersede or 409 ----------------------------------------------------------


def test_new_identification_supersedes_the_one_in_flight(fake, client):
    customer = new_customer(client)
    old = new_identification(client, customer)

    new = new_identification(client, customer)

    assert fake.is_superseded(old["id"])
    assert not fake.is_superseded(new["id"])
    assert fake.customers[customer["id"]]["status"] == "IdentificationRequired"

    fake.set_identification_status(old["id"], "Approved")  # too late: it no longer counts
    assert fake.identifications[old["id"]]["status"] == "Approved"
    assert fake.customers[customer["id"]]["status"] == "IdentificationRequired"
    assert [d.type for d in fake.outbox] == ["identification_status"]

    fake.set_identification_status(new["id"], "Approved")
    assert fake.customers[customer["id"]]["status"] == "Active"


def test_terminal_identifications_are_not_superseded(fake, client):
    customer = new_customer(client)
    declined = new_identification(client, customer)
    fake.set_identification_status(declined["id"], "Declined")

    new_identification(client, customer)

    assert not fake.is_superseded(declined["id"])


def test_conflict_switch_answers_409_has_pending_identification():
    with (
        FakeIron(conflict_on_pending=True) as fake,
        IronClient(api_key=API_KEY, base_url=fake.base_url, max_retries=0) as client,
    ):
        customer = new_customer(client)
        first = new_identification(client, customer)

        with pytest.raises(IronAPIError) as caught:
            new_identification(client, customer)

        assert caught.value.status == 409
        assert caught.value.message == "Has Pending Identification"
        assert caught.value.is_pending_identification_conflict
        assert len(fake.identifications) == 1

        fake.set_identification_status(first["id"], "Expired")
        assert new_identification(client, customer)["status"] == "Pending"


def test_new_identification_after_approval_moves_the_customer_back(fake, client):
    customer = new_customer(client)
    first = new_identification(client, customer)
    fake.set_identification_status(first["id"], "Approved", notify=False)
    assert fake.customers[customer["id"]]["status"] == "Active"

    new_identification(client, customer)  # a step-up

    assert fake.customers[customer["id"]]["status"] == "IdentificationRequired"
    [delivery] = fake.outbox
    assert delivery.event["data"]["message"] == {
        "CustomerStatus": {"id": customer["id"], "status": "IdentificationRequired"}
    }


# --- sandbox ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("approved", "status", "customer_status"),
    [(True, "Approved", "Active"), (False, "Declined", "IdentificationRequired")],
)
@pytest.mark.parametrize("start", ["Pending", "Processed", "PendingReview"])
def test_sandbox_decide_approves_or_declines_an_undecided_identification(
    fake, client, approved, status, customer_status, start
):
    customer = fake.add_customer()
    identification = fake.add_identification(customer["id"], status=start)

    result = client.sandbox_decide(
        identification["id"], approved=approved, idempotency_key=uuid.uuid4()
    )

    assert result["status"] == status
    assert result["updated_at"] > identification["updated_at"]
    assert fake.customers[customer["id"]]["status"] == customer_status
    assert fake.requests[-1].status == 201
    assert fake.outbox[0].event["data"]["message"] == {
        "IdentificationStatus": {"id": identification["id"], "status": status}
    }


@pytest.mark.parametrize("status", ["Approved", "Declined", "Expired", "Archived"])
def test_sandbox_decide_refuses_a_terminal_identification(fake, client, status):
    identification = fake.add_identification(fake.add_customer()["id"], status=status)

    with pytest.raises(IronAPIError) as caught:
        client.sandbox_decide(identification["id"], approved=True, idempotency_key=uuid.uuid4())

    assert caught.value.status == 400
    assert "not pending" in caught.value.message
    assert fake.identifications[identification["id"]]["status"] == status


@pytest.mark.parametrize("body", [{}, {"approved": "true"}, {"approved": 1}, [True]])
def test_sandbox_decide_rejects_a_wrong_body(fake, body):
    identification = fake.add_identification(fake.add_customer()["id"])

    response = raw(fake, "POST", f"/api/sandbox/identification/{identification['id']}", body=body)

    assert response.status_code == 400
    assert fake.identifications[identification["id"]]["status"] == "Pending"


def test_sandbox_decide_unknown_identification_is_404(client):
    with pytest.raises(IronAPIError) as caught:
        client.sandbox_decide(uuid.uuid4(), approved=True, idempotency_key=uuid.uuid4())
    assert caught.value.status == 404


def test_sandbox_decide_replays_under_the_same_key(fake, client):
    identification = fake.add_identification(fake.add_customer()["id"])
    key = uuid.uuid4()

    first = client.sandbox_decide(identification["id"], approved=True, idempotency_key=key)
    second = client.sandbox_decide(identification["id"], approved=True, idempotency_key=key)

    assert first == second


def test_sandbox_webhooks_can_be_switched_off():
    with (
        FakeIron(sandbox_webhooks=False) as fake,
        IronClient(api_key=API_KEY, base_url=fake.base_url, max_retries=0) as client,
    ):
        identification = fake.add_identification(fake.add_customer()["id"])
        client.sandbox_decide(identification["id"], approved=True, idempotency_key=uuid.uuid4())
        assert fake.outbox == []


# --- listing ----------------------------------------------------------------------------------


def test_list_follows_cursor_pages_over_every_identification(fake, client):
    customer = fake.add_customer()
    made = [fake.add_identification(customer["id"], status="Declined")["id"] for _ in range(23)]
    path = f"/api/customers/{customer['id']}/identifications"

    pages = []
    params: dict[str, Any] = {"page_size": 10}
    while True:
        page = raw(fake, "GET", path, params=params).json()
        pages.append(page)
        if not page["cursor"]:
            break
        params["cursor"] = page["cursor"]

    assert [len(p["items"]) for p in pages] == [10, 10, 3]
    assert [p["prev_cursor"] is None for p in pages] == [True, False, False]
    listed = [i["id"] for p in pages for i in p["items"]]
    assert listed == list(reversed(made))  # newest first by default
    assert [i["id"] for i in client.iter_identifications(customer["id"], page_size=10)] == listed


def test_list_page_size_defaults_to_10(fake):
    customer = fake.add_customer()
    for _ in range(12):
        fake.add_identification(customer["id"], status="Expired")

    page = raw(fake, "GET", f"/api/customers/{customer['id']}/identifications").json()

    assert len(page["items"]) == 10
    assert page["cursor"] == page["items"][-1]["id"]


def test_list_of_a_customer_without_identifications_is_one_empty_page(fake, client):
    customer = fake.add_customer()

    page = raw(fake, "GET", f"/api/customers/{customer['id']}/identifications").json()

    assert page == {"items": [], "cursor": None, "prev_cursor": None}
    assert client.list_identifications(customer["id"]) == []


@pytest.mark.parametrize(
    "params",
    [{"page_size": 101}, {"page_size": 0}, {"page_size": "ten"}, {"cursor": str(uuid.uuid4())}],
)
def test_list_rejects_bad_paging_parameters(fake, params):
    customer = fake.add_customer()
    fake.add_identification(customer["id"])

    response = raw(fake, "GET", f"/api/customers/{customer['id']}/identifications", params=params)

    assert response.status_code == 400


def test_list_accepts_page_size_100(fake):
    customer = fake.add_customer()
    response = raw(
        fake, "GET", f"/api/customers/{customer['id']}/identifications", params={"page_size": 100}
    )
    assert response.status_code == 200


def test_list_order_can_be_oldest_first():
    with FakeIron(list_order="oldest") as fake:
        customer = fake.add_customer()
        made = [fake.add_identification(customer["id"], status="Declined")["id"] for _ in range(3)]
        page = raw(fake, "GET", f"/api/customers/{customer['id']}/identifications").json()
        assert [i["id"] for i in page["items"]] == made


def test_list_unknown_customer_is_404(client):
    with pytest.raises(IronAPIError) as caught:
        client.list_identifications(uuid.uuid4())
    assert caught.value.status == 404


# --- error shapes -----------------------------------------------------------------------------


def test_500_answers_message_and_trace_id(fake, client):
    fake.fail_next(status=500)

    with pytest.raises(IronTransientError) as caught:
        client.get_customer(uuid.uuid4())

    assert caught.value.status == 500
    assert caught.value.message == "Internal Server Error"
    body = fake.requests[-1]
    assert body.status == 500
    assert caught.value.request_id == caught.value.body["trace_id"]


def test_envelope_error_format_answers_code_message_request_id():
    with (
        FakeIron(error_format="envelope", conflict_on_pending=True) as fake,
        IronClient(api_key=API_KEY, base_url=fake.base_url, max_retries=0) as client,
    ):
        customer = new_customer(client)
        new_identification(client, customer)

        with pytest.raises(IronAPIError) as caught:
            new_identification(client, customer)
        assert caught.value.code == "has_pending_identification"
        assert caught.value.request_id
        assert caught.value.is_pending_identification_conflict

        with pytest.raises(IronAPIError) as caught:
            client.get_customer(uuid.uuid4())
        assert (caught.value.status, caught.value.code) == (404, "not_found")
        assert caught.value.message == "Customer not found"

        response = raw(fake, "GET", "/api/customers/x", api_key="bad")
        assert response.json()["error"]["code"] == "unauthorized"
