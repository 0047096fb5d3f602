"""Helpers of the test kit's tests: raw requests to a fake, objects made through the client."""

from __future__ import annotations

import json
import uuid
from typing import Any

import requests

from django_iron_kyc import signing
from django_iron_kyc.client import IronClient
from django_iron_kyc.testing import FakeIron

API_KEY = "test-api-key-d0-not-log"


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
