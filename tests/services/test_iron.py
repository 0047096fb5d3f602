"""What the services share to talk to Iron (services.iron)."""

from __future__ import annotations

from typing import Any

import pytest

from django_iron_kyc import services

pytestmark = pytest.mark.django_db


def test_get_client_reads_settings_when_called(settings: Any) -> None:
    settings.IRON_KYC_BASE_URL = "http://127.0.0.1:1234"
    assert services.get_client().base_url == "http://127.0.0.1:1234"
    settings.IRON_KYC_BASE_URL = "http://127.0.0.1:4321"
    assert services.get_client().base_url == "http://127.0.0.1:4321"
