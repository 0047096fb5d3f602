"""The fake's webhook outbox (testing/fake/outbox.py): signed events for every change,
duplicated, reordered, resent, delivered through a sender or over HTTP."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from django_iron_kyc import signing
from django_iron_kyc.testing import FakeIron, build_event
from tests.testing.support import verify_delivery


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
