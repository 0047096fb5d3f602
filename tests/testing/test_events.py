"""Signed webhook deliveries as Iron sends them (testing/events.py): the signer and the
event builder."""

from __future__ import annotations

import uuid

import pytest

from django_iron_kyc.testing import build_event, sign_webhook
from tests.testing.support import verify_delivery


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
