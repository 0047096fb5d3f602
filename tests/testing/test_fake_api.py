"""The fake Iron itself: every rule it promises (IRON_API.md Part A), over real HTTP."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from django_iron_kyc import signing
from django_iron_kyc.client import IronClient
from django_iron_kyc.exceptions import IronAPIError, IronTransientError
from django_iron_kyc.testing import FakeIron, build_event, sign_webhook

API_KEY = "test-api-key-d0-not-log"


@pytest.fixture
def fake() -> Iterator[FakeIron]:
    with FakeIron() as server:
        yield server


@pytest.fixture
def client(fake: FakeIron) -> Iterator[IronClient]:
    with IronClient(api_key=API_KEY, base_url=fake.base_url, max_retries=0) as iron:
        yield iron


def raw(
    fake: FakeIron,
    method: str,
    path: str,
    *,
    body: Any = None,
    key: str | None = "new",
    api_key: str | None = API_KEY,
    params: dict[str, Any] | None = None,
) -> requests.Response:
    """One request with full control over the headers (the client always sends them right)."""
    headers = {}
    if api_key is not None:
        headers["X-API-Key"] = api_key
    if method == "POST" and key is not None:
        headers["IDEMPOTENCY-KEY"] = str(uuid.uuid4()) if key == "new" else key
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
    if data is not None:
        headers["Content-Type"] = "application/json; charset=utf-8"
    return requests.request(
        method, fake.base_url + path, data=data, headers=headers, params=params, timeout=5
    )


def new_customer(client: IronClient) -> dict[str, Any]:
    return client.create_customer(email="ada@example.com", idempotency_key=uuid.uuid4())


def new_identification(client: IronClient, customer: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return client.create_identification(customer["id"], idempotency_key=uuid.uuid4(), **kw)


def verify_delivery(headers: dict[str, str], body: bytes, secret: str = "test_secret") -> int:
    return signing.verify(
        body=body,
        timestamp_header=headers["webhook-timestamp"],
        signature_header=headers["webhook-signature"],
        secrets=[secret],
        tolerance=300,
    )


# --- lifecycle --------------------------------------------------------------------------


def test_fake_serves_on_a_random_loopback_port_until_stopped():
    fake = FakeIron().start()
    try:
        assert fake.base_url.startswith("http://127.0.0.1:")
        assert fake.port != 0
        assert raw(fake, "GET", "/nowhere").status_code == 404
    finally:
        fake.stop()
    assert not fake.running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{fake.port}/api/customers/x", timeout=2)


def test_two_fakes_run_side_by_side_with_separate_state():
    with FakeIron() as one, FakeIron() as two:
        one.add_customer(email="a@example.com")
        assert one.port != two.port
        assert len(one.customers) == 1
        assert two.customers == {}


def test_django_settings_point_the_app_at_the_fake(fake):
    assert fake.django_settings() == {
        "IRON_KYC_BASE_URL": fake.base_url,
        "IRON_KYC_API_KEY": API_KEY,
        "IRON_KYC_WEBHOOK_SECRET": "test_secret",
    }


def test_constructor_rejects_unknown_options():
    with pytest.raises(ValueError, match="message_shape"):
        FakeIron(message_shape="nested")
    with pytest.raises(ValueError, match="error_format"):
        FakeIron(error_format="xml")
    with pytest.raises(ValueError, match="list_order"):
        FakeIron(list_order="random")


def test_constructor_takes_only_the_api_key_by_position():
    assert FakeIron("k").api_key == "k"
    with pytest.raises(TypeError):
        FakeIron("k", "secret")  # type: ignore[misc]


def test_options_can_change_while_the_fake_runs(fake):
    fake.message_shape = "flat"
    fake.webhook_secret = "other"

    fake.set_customer_status(fake.add_customer()["id"], "Suspended")

    [delivery] = fake.outbox
    assert fake.options.message_shape == "flat"
    assert set(delivery.event["data"]["message"]) == {"id", "status"}
    assert verify_delivery(delivery.headers, delivery.body, secret="other")


# --- authentication -----------------------------------------------------------------------

ENDPOINTS = [
    ("POST", "/api/customers", {"customer_type": "Person", "email": "a@example.com"}),
    ("GET", "/api/customers/{customer}", None),
    ("POST", "/api/customers/{customer}/identifications/v2", {"type": "Link"}),
    ("GET", "/api/customers/{customer}/identifications", None),
    ("GET", "/api/identifications/{identification}", None),
    ("POST", "/api/sandbox/identification/{identification}", {"approved": True}),
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


# --- customers ----------------------------------------------------------------------------


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


def test_a_path_id_that_is_not_a_uuid_is_400(fake):
    response = raw(fake, "GET", "/api/customers/not-a-uuid")
    assert response.status_code == 400


def test_unknown_routes_are_404_and_wrong_methods_405(fake):
    assert raw(fake, "GET", "/api/customers/x/identifications/v3").status_code == 404
    assert raw(fake, "PUT", f"/api/customers/{uuid.uuid4()}").status_code == 405


# --- identifications ----------------------------------------------------------------------


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


# --- idempotency --------------------------------------------------------------------------


def test_post_without_idempotency_key_is_400_and_does_nothing(fake):
    response = raw(
        fake,
        "POST",
        "/api/customers",
        body={"customer_type": "Person", "email": "a@b.co"},
        key=None,
    )

    assert response.status_code == 400
    assert "IDEMPOTENCY-KEY" in response.json()
    assert fake.customers == {}


def test_idempotency_key_must_be_a_uuid(fake):
    response = raw(
        fake, "POST", "/api/customers", body={"customer_type": "Person", "email": "a@b.co"}, key="1"
    )
    assert response.status_code == 400


def test_same_key_and_body_replays_the_first_response(fake, client):
    customer = new_customer(client)
    key = uuid.uuid4()

    first = client.create_identification(customer["id"], idempotency_key=key)
    fake.set_identification_status(first["id"], "Processed", notify=False)
    second = client.create_identification(customer["id"], idempotency_key=key)

    assert second == first  # the stored answer, not the current state
    assert len(fake.identifications) == 1
    replays = [r.replayed for r in fake.requests_to("POST", "/identifications/v2")]
    assert replays == [False, True]


def test_replay_ignores_json_formatting(fake):
    customer = fake.add_customer()
    path = f"/api/customers/{customer['id']}/identifications/v2"
    key = str(uuid.uuid4())

    first = raw(fake, "POST", path, body=b'{"type": "Link"}', key=key)
    second = raw(fake, "POST", path, body=b'{"type":"Link"}', key=key)

    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["x-fake-iron-replayed"] == "true"


def test_same_key_with_another_body_is_409_and_never_retried(fake, client):
    customer = new_customer(client)
    key = uuid.uuid4()
    client.create_identification(customer["id"], idempotency_key=key)

    with pytest.raises(IronAPIError) as caught:
        client.create_identification(customer["id"], idempotency_key=key, with_edd=True)

    assert caught.value.status == 409
    assert caught.value.is_idempotency_conflict
    assert not caught.value.is_pending_identification_conflict
    assert str(key) in caught.value.message
    assert len(fake.identifications) == 1


def test_keys_are_scoped_per_path(fake, client):
    key = uuid.uuid4()
    customer = client.create_customer(email="a@example.com", idempotency_key=key)

    identification = client.create_identification(customer["id"], idempotency_key=key)

    assert identification["status"] == "Pending"


def test_a_rejected_request_leaves_the_key_unused(fake):
    customer = fake.add_customer()
    path = f"/api/customers/{customer['id']}/identifications/v2"
    key = str(uuid.uuid4())

    assert raw(fake, "POST", path, body={"type": "Token"}, key=key).status_code == 400
    assert raw(fake, "POST", path, body={"type": "Link"}, key=key).status_code == 201


def test_key_still_replays_just_before_24_hours(fake, client):
    customer = new_customer(client)
    key = uuid.uuid4()
    first = client.create_identification(customer["id"], idempotency_key=key)

    fake.advance(24 * 3600 - 1)

    assert client.create_identification(customer["id"], idempotency_key=key) == first
    assert len(fake.identifications) == 1


def test_key_expires_after_24_hours_and_the_same_key_creates_again(fake, client):
    customer = new_customer(client)
    key = uuid.uuid4()
    first = client.create_identification(customer["id"], idempotency_key=key)

    fake.advance(24 * 3600 + 1)
    second = client.create_identification(customer["id"], idempotency_key=key)

    assert second["id"] != first["id"]
    assert len(fake.identifications) == 2
    assert fake.is_superseded(first["id"])


def test_concurrent_requests_with_one_key_create_exactly_one_identification(fake):
    customer = fake.add_customer()
    key = uuid.uuid4()
    threads_count = 6
    barrier = threading.Barrier(threads_count)
    results: list[dict[str, Any] | BaseException] = []
    lock = threading.Lock()

    def create() -> None:
        with IronClient(api_key=API_KEY, base_url=fake.base_url, max_retries=0) as client:
            barrier.wait()
            try:
                result: dict[str, Any] | BaseException = client.create_identification(
                    customer["id"], idempotency_key=key
                )
            except BaseException as exc:  # reported by the assertion below
                result = exc
        with lock:
            results.append(result)

    threads = [threading.Thread(target=create) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(results) == threads_count
    assert all(isinstance(r, dict) for r in results), results
    assert len({r["id"] for r in results}) == 1  # type: ignore[index]
    assert len(fake.identifications) == 1
    assert sum(not r.replayed for r in fake.requests_to("POST", "/identifications/v2")) == 1


def test_concurrent_requests_with_different_keys_and_conflict_switch_create_one():
    with FakeIron(conflict_on_pending=True) as fake:
        customer = fake.add_customer()
        barrier = threading.Barrier(4)
        statuses: list[int] = []

        def create() -> None:
            barrier.wait()
            response = raw(
                fake,
                "POST",
                f"/api/customers/{customer['id']}/identifications/v2",
                body={"type": "Link"},
            )
            statuses.append(response.status_code)

        threads = [threading.Thread(target=create) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)

        assert sorted(statuses) == [201, 409, 409, 409]
        assert len(fake.identifications) == 1


# --- one in flight: supersede or 409 ------------------------------------------------------


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


# --- status helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "customer_status"),
    [
        ("Pending", "IdentificationRequired"),
        ("Processed", "IdentificationRequired"),
        ("PendingReview", "IdentificationRequired"),
        ("Approved", "Active"),
        ("Declined", "IdentificationRequired"),
        ("Expired", "IdentificationRequired"),
        ("Archived", "IdentificationRequired"),
    ],
)
def test_customer_status_follows_its_newest_identification(fake, client, status, customer_status):
    customer = fake.add_customer(status="Active")
    identification = fake.add_identification(customer["id"])

    fake.set_identification_status(identification["id"], status)

    assert client.get_identification(identification["id"])["status"] == status
    remote = client.get_customer(customer["id"])
    assert remote["status"] == customer_status
    assert remote["identification_status"] == status


def test_status_walk_bumps_updated_at_each_time(fake):
    identification = fake.add_identification(fake.add_customer()["id"])
    stamps = [identification["updated_at"]]

    for status in ("Processed", "PendingReview", "Approved"):
        stamps.append(fake.set_identification_status(identification["id"], status)["updated_at"])

    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 4
    assert fake.identifications[identification["id"]]["created_at"] == stamps[0]


def test_review_comment_is_set_and_served(fake, client):
    identification = fake.add_identification(fake.add_customer()["id"])

    fake.set_identification_status(identification["id"], "Declined", review_comment="Blurry ID")

    assert client.get_identification(identification["id"])["review_comment"] == "Blurry ID"


def test_unknown_status_is_kept_and_leaves_the_customer_alone(fake):
    customer = fake.add_customer(status="Active")
    identification = fake.add_identification(customer["id"], status="Approved")

    fake.set_identification_status(identification["id"], "OnHold")

    assert fake.identifications[identification["id"]]["status"] == "OnHold"
    assert fake.customers[customer["id"]]["status"] == "Active"


def test_set_customer_status_queues_a_customer_status_event(fake):
    customer = fake.add_customer()

    fake.set_customer_status(customer["id"], "Suspended")

    assert fake.customers[customer["id"]]["status"] == "Suspended"
    assert [d.event["data"]["message"] for d in fake.outbox] == [
        {"CustomerStatus": {"id": customer["id"], "status": "Suspended"}}
    ]


def test_state_can_be_looked_up_by_uuid_or_string(fake):
    customer = fake.add_customer()
    identification = fake.add_identification(customer["id"])
    key = uuid.UUID(identification["id"])

    assert fake.identifications[key] is fake.identifications[identification["id"]]
    assert key in fake.identifications
    assert fake.customers.get(uuid.UUID(customer["id"]))["id"] == customer["id"]
    assert fake.customers.get(uuid.uuid4()) is None


def test_state_mappings_are_snapshots_of_the_live_objects(fake):
    customer = fake.add_customer()
    snapshot = fake.customers

    fake.add_customer()
    fake.set_customer_status(customer["id"], "Suspended")

    assert list(snapshot) == [customer["id"]]  # safe to iterate while the fake changes
    assert snapshot[customer["id"]]["status"] == "Suspended"


def test_setting_status_of_unknown_identification_raises_key_error(fake):
    with pytest.raises(KeyError):
        fake.set_identification_status(uuid.uuid4(), "Approved")


def test_advance_moves_the_clock_and_timestamps(fake):
    before = fake.now
    moved = fake.advance(3600)

    assert 3600 <= (moved - before).total_seconds() < 3700
    customer = fake.add_customer()
    assert customer["created_at"] >= moved.strftime("%Y-%m-%dT%H:%M:%S")


# --- sandbox ------------------------------------------------------------------------------


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


# --- listing ------------------------------------------------------------------------------


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


# --- error shapes -------------------------------------------------------------------------


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


# --- faults -------------------------------------------------------------------------------


def test_fail_next_answers_503_once_then_works(fake, client):
    fake.fail_next()

    with pytest.raises(IronTransientError) as caught:
        new_customer(client)
    assert caught.value.status == 503
    assert fake.customers == {}

    assert new_customer(client)["status"] == "IdentificationRequired"


def test_fail_next_hits_only_matching_requests_and_counts_down(fake, client):
    customer = new_customer(client)
    fake.fail_next(2, status=502, method="POST", path=r"/identifications/v2$")

    client.get_customer(customer["id"])
    client.list_identifications(customer["id"])
    for _ in range(2):
        with pytest.raises(IronTransientError):
            new_identification(client, customer)
    new_identification(client, customer)

    assert [r.status for r in fake.requests_to("POST", "/identifications/v2")] == [502, 502, 201]
    assert all(r.fault is None for r in fake.requests_to("GET", "."))


def test_429_carries_retry_after(fake, client):
    customer = fake.add_customer()
    fake.fail_next(status=429, retry_after=7)

    with pytest.raises(IronTransientError) as caught:
        new_identification(client, customer)

    assert caught.value.status == 429
    assert caught.value.retry_after == 7
    assert caught.value.message == "Creation Rate Limit Exceeded"


def test_client_retries_through_faults_with_the_same_key(fake):
    customer = fake.add_customer()
    fake.fail_next(2, status=503, retry_after=0)

    with IronClient(
        api_key=API_KEY, base_url=fake.base_url, max_retries=3, backoff_factor=0
    ) as client:
        identification = new_identification(client, customer)

    sent = fake.requests_to("POST", "/identifications/v2")
    assert [r.status for r in sent] == [503, 503, 201]
    assert len({r.idempotency_key for r in sent}) == 1
    assert list(fake.identifications) == [identification["id"]]


def test_drop_before_does_no_work(fake, client):
    customer = fake.add_customer()
    key = uuid.uuid4()
    fake.fail_next(drop="before")

    with pytest.raises(IronTransientError):
        client.create_identification(customer["id"], idempotency_key=key)
    assert fake.identifications == {}
    assert fake.requests[-1].status is None

    client.create_identification(customer["id"], idempotency_key=key)
    assert len(fake.identifications) == 1


def test_drop_after_does_the_work_and_a_retry_replays_it(fake, client):
    customer = fake.add_customer()
    key = uuid.uuid4()
    fake.fail_next(drop="after")

    with pytest.raises(IronTransientError):
        client.create_identification(customer["id"], idempotency_key=key)
    [created] = fake.identifications.values()

    again = client.create_identification(customer["id"], idempotency_key=key)

    assert again == created
    assert len(fake.identifications) == 1
    assert fake.requests[-1].replayed


def test_slow_answer_times_out_and_the_retry_finds_one_identification(fake):
    customer = fake.add_customer()
    key = uuid.uuid4()
    release = threading.Event()
    fake.fail_next(delay=release)

    with IronClient(
        api_key=API_KEY, base_url=fake.base_url, max_retries=0, timeout=(2, 0.2)
    ) as client:
        with pytest.raises(IronTransientError):
            client.create_identification(customer["id"], idempotency_key=key)
        release.set()
        second = client.create_identification(customer["id"], idempotency_key=key)

    assert list(fake.identifications) == [second["id"]]


def test_delay_alone_gives_the_real_answer_late(fake, client):
    fake.fail_next(delay=0.01)

    assert new_customer(client)["status"] == "IdentificationRequired"
    assert fake.requests[-1].fault is not None


def test_stop_releases_a_request_held_by_a_delay():
    fake = FakeIron().start()
    fake.fail_next(delay=threading.Event())  # never set
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(raw(fake, "GET", "/api/customers/x").status_code)
        except requests.RequestException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    while not fake.requests:  # the request has arrived and is being held
        threading.Event().wait(0.01)
    fake.stop()
    thread.join(timeout=5)

    assert not thread.is_alive()
    assert len(outcome) == 1


def test_faults_lists_the_armed_faults_until_they_are_used(fake, client):
    first = fake.fail_next(2, status=500)
    second = fake.fail_next(drop="before", path="/nowhere")
    assert fake.faults == [first, second]

    with pytest.raises(IronTransientError):
        client.get_customer(uuid.uuid4())
    assert [f.remaining for f in fake.faults] == [1, 1]

    fake.clear_faults()
    assert fake.faults == []


def test_fail_next_validates_drop():
    with pytest.raises(ValueError, match="drop"):
        FakeIron().fail_next(drop="sometimes")  # type: ignore[arg-type]


# --- request log --------------------------------------------------------------------------


def test_every_request_is_recorded_with_headers_query_and_body(fake, client):
    customer = new_customer(client)
    list(client.iter_identifications(customer["id"], page_size=5))

    post, get = fake.requests
    assert (post.method, post.path) == ("POST", "/api/customers")
    assert post.headers["x-api-key"] == API_KEY
    assert uuid.UUID(post.idempotency_key)
    assert post.json == {"customer_type": "Person", "email": "ada@example.com"}
    assert json.loads(post.body) == post.json
    assert post.headers["content-type"] == "application/json; charset=utf-8"
    assert (get.method, get.query) == ("GET", {"page_size": ["5"]})
    assert get.body == b""
    assert get.json is None
    assert fake.requests_to("get", "/identifications$") == [get]
    assert fake.requests_to(None, "^/api/customers$") == [post]


# --- webhooks -----------------------------------------------------------------------------


def test_status_change_queues_signed_identification_and_customer_events(fake):
    customer = fake.add_customer()
    identification = fake.add_identification(customer["id"])

    changed = fake.set_identification_status(identification["id"], "Approved")

    ident_delivery, customer_delivery = fake.outbox
    assert ident_delivery.event == {
        "type": "identification_status",
        "timestamp": ident_delivery.event["timestamp"],
        "data": {
            "customer_id": customer["id"],
            "message": {"IdentificationStatus": {"id": identification["id"], "status": "Approved"}},
        },
    }
    assert customer_delivery.event["data"]["message"] == {
        "CustomerStatus": {"id": customer["id"], "status": "Active"}
    }
    for delivery in (ident_delivery, customer_delivery):
        assert json.loads(delivery.body) == delivery.event
        assert uuid.UUID(delivery.webhook_id).version == 4
        assert delivery.headers["webhook-id"] == delivery.webhook_id
        assert verify_delivery(delivery.headers, delivery.body) == delivery.timestamp
        # the container's timestamp is Iron's updated_at, on the fake's clock
        assert delivery.event["timestamp"].replace("+00:00", "Z") == changed["updated_at"]
    assert ident_delivery.webhook_id != customer_delivery.webhook_id


def test_signature_does_not_verify_under_another_secret(fake):
    fake.set_customer_status(fake.add_customer()["id"], "Suspended")
    [delivery] = fake.outbox

    with pytest.raises(signing.SignatureError):
        verify_delivery(delivery.headers, delivery.body, secret="other")


def test_flat_message_shape():
    with FakeIron(message_shape="flat") as fake:
        identification = fake.add_identification(fake.add_customer()["id"])
        fake.set_identification_status(identification["id"], "Declined")
        assert fake.outbox[0].event["data"]["message"] == {
            "id": identification["id"],
            "status": "Declined",
        }


def test_unchanged_customer_status_sends_only_the_identification_event(fake):
    identification = fake.add_identification(fake.add_customer()["id"])

    fake.set_identification_status(identification["id"], "Processed")

    assert [d.type for d in fake.outbox] == ["identification_status"]


def test_notify_false_queues_nothing(fake):
    identification = fake.add_identification(fake.add_customer()["id"])

    fake.set_identification_status(identification["id"], "Approved", notify=False)

    assert fake.outbox == []


def test_duplicate_next_webhooks_queues_the_same_delivery_twice(fake):
    identification = fake.add_identification(fake.add_customer()["id"])
    fake.duplicate_next_webhooks(1)

    fake.set_identification_status(identification["id"], "Approved")

    first, second, customer_event = fake.outbox
    assert first.webhook_id == second.webhook_id
    assert first.body == second.body
    assert first.headers == second.headers
    assert customer_event.type == "customer_status"


def test_reorder_outbox_reverses_or_permutes(fake):
    identification = fake.add_identification(fake.add_customer()["id"])
    for status in ("Processed", "PendingReview", "Approved"):
        fake.set_identification_status(identification["id"], status)
    original = list(fake.outbox)

    fake.reorder_outbox()
    assert fake.outbox == list(reversed(original))

    fake.reorder_outbox([3, 0, 1, 2])
    assert [d.webhook_id for d in fake.outbox] == [
        original[0].webhook_id,
        original[3].webhook_id,
        original[2].webhook_id,
        original[1].webhook_id,
    ]
    with pytest.raises(ValueError, match="permutation"):
        fake.reorder_outbox([0, 0, 1, 2])


def test_resend_under_a_new_id_or_the_same(fake):
    fake.set_customer_status(fake.add_customer()["id"], "Suspended")
    [delivery] = fake.outbox
    fake.deliver_webhooks(send=lambda headers, body: None)

    again = fake.resend(delivery)
    same = fake.resend(delivery, new_id=False)

    assert fake.outbox == [again, same]
    assert again.webhook_id != delivery.webhook_id
    assert again.body == delivery.body
    verify_delivery(again.headers, again.body)
    assert same.headers == delivery.headers


def test_deliver_webhooks_calls_send_in_outbox_order_and_empties_it(fake):
    identification = fake.add_identification(fake.add_customer()["id"])
    fake.set_identification_status(identification["id"], "Approved")
    queued = list(fake.outbox)
    seen: list[tuple[dict[str, str], bytes]] = []

    def send(headers: dict[str, str], body: bytes) -> int:
        seen.append((headers, body))
        return len(seen)

    results = fake.deliver_webhooks(send=send)

    assert results == [1, 2]
    assert [body for _, body in seen] == [d.body for d in queued]
    assert [h["webhook-id"] for h, _ in seen] == [d.webhook_id for d in queued]
    assert fake.outbox == []
    assert [d for d, _ in fake.sent] == queued


def test_deliver_selected_webhooks_keeps_the_rest_queued(fake):
    identification = fake.add_identification(fake.add_customer()["id"])
    fake.set_identification_status(identification["id"], "Approved")
    first, second = fake.outbox

    fake.deliver_webhooks(send=lambda headers, body: None, deliveries=[second])

    assert fake.outbox == [first]


def test_deliver_webhooks_needs_a_url_or_a_sender(fake):
    fake.set_customer_status(fake.add_customer()["id"], "Suspended")

    with pytest.raises(RuntimeError, match="webhook_url"):
        fake.deliver_webhooks()
    assert len(fake.outbox) == 1


class _Receiver:
    """A tiny HTTP endpoint that records what it receives."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                receiver.arrived.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/iron/webhook/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    receiver = _Receiver()
    yield receiver
    receiver.close()


def test_deliver_webhooks_posts_signed_deliveries_over_http(receiver):
    with FakeIron(webhook_url=receiver.url) as fake:
        fake.set_customer_status(fake.add_customer()["id"], "Suspended")
        [delivery] = fake.outbox

        [result] = fake.deliver_webhooks()

    assert result.status_code == 200
    assert result.body == b"ok"
    [(headers, body)] = receiver.received
    assert body == delivery.body
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == delivery.webhook_id
    verify_delivery(headers, body)


def test_http_delivery_reports_an_unreachable_receiver():
    with FakeIron(webhook_url="http://127.0.0.1:9/hook") as fake:
        fake.set_customer_status(fake.add_customer()["id"], "Suspended")
        [result] = fake.deliver_webhooks()
    assert result.status_code is None
    assert result.error


def test_auto_deliver_posts_right_after_the_change(receiver):
    with FakeIron(webhook_url=receiver.url, auto_deliver=True) as fake:
        identification = fake.add_identification(fake.add_customer()["id"])
        fake.set_identification_status(identification["id"], "Declined")

        assert fake.wait_for_webhooks(timeout=10)
        assert fake.outbox == []
    assert [json.loads(body)["type"] for _, body in receiver.received] == ["identification_status"]


def test_queue_webhook_signs_any_event(fake):
    event = build_event("ping", uuid.uuid4(), uuid.uuid4(), None)

    delivery = fake.queue_webhook(event)

    assert fake.outbox == [delivery]
    assert json.loads(delivery.body) == event
    verify_delivery(delivery.headers, delivery.body)


# --- hosted page (for a person driving the fake by hand) ---------------------------------


def test_hosted_page_lets_a_person_decide_without_an_api_key(fake):
    identification = fake.add_identification(fake.add_customer()["id"])

    page = requests.get(identification["url"], timeout=5)
    assert page.status_code == 200
    assert "Pending" in page.text

    decided = requests.post(
        f"{fake.base_url}/verify/{identification['id']}",
        data={"status": "Approved"},
        timeout=5,
        allow_redirects=False,
    )
    assert decided.status_code == 303
    assert fake.identifications[identification["id"]]["status"] == "Approved"
    assert [d.type for d in fake.outbox] == ["identification_status", "customer_status"]


# --- signer and event builder -------------------------------------------------------------


def test_sign_webhook_matches_the_contract_test_vector():
    body = (
        '{"type":"identification_status","timestamp":"2025-06-02T14:59:26.769468+00:00",'
        '"data":{"customer_id":"2ff3e394-978b-4489-8795-0a4e769a04c6","message":'
        '{"IdentificationStatus":{"id":"c3d4e5f6-a7b8-9012-cdef-345678901234",'
        '"status":"Approved"}}}}'
    )

    headers = sign_webhook(body, "test_secret", timestamp=1717171717, webhook_id="w-1")

    assert headers == {
        "webhook-id": "w-1",
        "webhook-timestamp": "1717171717",
        "webhook-signature": "v1=a61a5512b6d992f6c47df3f1b3a92509d6cb2341c81cc76215cc4b3194394c3d",
        "content-type": "application/json",
    }


def test_sign_webhook_defaults_to_now_and_a_new_id():
    headers = sign_webhook(b"{}", "whsec_c2VjcmV0")

    assert uuid.UUID(headers["webhook-id"]).version == 4
    verify_delivery(headers, b"{}", secret="whsec_c2VjcmV0")


def test_build_event_builds_iron_containers():
    tagged = build_event(
        "identification_status",
        "c1",
        "i1",
        "Approved",
        timestamp="2025-06-02T14:59:26.769468+00:00",
    )
    flat = build_event("customer_status", "c1", "c1", "Active", shape="flat")

    assert tagged == {
        "type": "identification_status",
        "timestamp": "2025-06-02T14:59:26.769468+00:00",
        "data": {
            "customer_id": "c1",
            "message": {"IdentificationStatus": {"id": "i1", "status": "Approved"}},
        },
    }
    assert flat["data"]["message"] == {"id": "c1", "status": "Active"}
    assert flat["timestamp"].endswith("+00:00")
    with pytest.raises(ValueError, match="shape"):
        build_event("customer_status", "c1", "c1", "Active", shape="nested")
