"""System checks of the end-user settings: one test per ID, and the values that pass."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from django_iron_kyc.services.verification import default_customer_data

CLEAN = {
    "IRON_KYC_API_KEY": "sk_live_abc123",
    "IRON_KYC_BASE_URL": "https://api.iron.xyz",
    "IRON_KYC_WEBHOOK_SECRET": "whsec_dGVzdF9zZWNyZXQ=",
}


def ids(**overrides: Any) -> list[str]:
    with override_settings(**{**CLEAN, **overrides}):
        return [str(m.id) for m in run_checks() if str(m.id).startswith("iron_kyc.")]


def messages(**overrides: Any) -> list[Any]:
    with override_settings(**{**CLEAN, **overrides}):
        return [m for m in run_checks() if str(m.id).startswith("iron_kyc.")]


def customer_data(user: Any) -> dict[str, Any]:
    return {"email": "someone@example.com"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IRON_KYC_VERIFICATION_CUSTOMER_DATA", None),
        (
            "IRON_KYC_VERIFICATION_CUSTOMER_DATA",
            f"{default_customer_data.__module__}.default_customer_data",
        ),
        ("IRON_KYC_VERIFICATION_CUSTOMER_DATA", customer_data),
        ("IRON_KYC_VERIFICATION_ALLOW_EDD", True),
        ("IRON_KYC_VERIFICATION_ALLOW_EDD", False),
        ("IRON_KYC_VERIFICATION_THROTTLE_RATE", "20/hour"),
        ("IRON_KYC_VERIFICATION_THROTTLE_RATE", "5/m"),
        ("IRON_KYC_VERIFICATION_THROTTLE_RATE", None),
        ("IRON_KYC_VERIFICATION_BASE_TEMPLATE", "iron_kyc/base.html"),
        ("IRON_KYC_VERIFICATION_BASE_TEMPLATE", None),
        ("IRON_KYC_VERIFICATION_REDIRECT_WAIT", 0),
        ("IRON_KYC_VERIFICATION_REDIRECT_WAIT", 2.5),
        ("IRON_KYC_VERIFICATION_REDIRECT_WAIT", 30),
    ],
)
def test_end_user_settings_that_pass(name, value):
    assert ids(**{name: value}) == []


@pytest.mark.parametrize(
    "value", ["django_iron_kyc.nowhere.data", "django_iron_kyc.conf.SANDBOX_HOST", 42, ""]
)
def test_e017_customer_data_not_an_importable_callable(value):
    assert ids(IRON_KYC_VERIFICATION_CUSTOMER_DATA=value) == ["iron_kyc.E017"]


@pytest.mark.parametrize("value", ["yes", 1, "False"])
def test_e018_allow_edd_not_a_bool(value):
    assert ids(IRON_KYC_VERIFICATION_ALLOW_EDD=value) == ["iron_kyc.E018"]


@pytest.mark.parametrize("value", ["20", "20/fortnight", "0/hour", "hour/20", 20])
def test_e019_throttle_rate_not_a_drf_rate(value):
    assert ids(IRON_KYC_VERIFICATION_THROTTLE_RATE=value) == ["iron_kyc.E019"]


@pytest.mark.parametrize("value", ["no/such/base.html", 3, ""])
def test_e020_base_template_not_found(value):
    assert ids(IRON_KYC_VERIFICATION_BASE_TEMPLATE=value) == ["iron_kyc.E020"]


@pytest.mark.parametrize("value", [-1, 31, "3", True])
def test_e021_redirect_wait_not_a_few_seconds(value):
    assert ids(IRON_KYC_VERIFICATION_REDIRECT_WAIT=value) == ["iron_kyc.E021"]


def test_each_end_user_message_names_its_setting_and_has_a_hint():
    found = messages(
        IRON_KYC_VERIFICATION_CUSTOMER_DATA="no.such.path",
        IRON_KYC_VERIFICATION_ALLOW_EDD="yes",
        IRON_KYC_VERIFICATION_THROTTLE_RATE="often",
        IRON_KYC_VERIFICATION_BASE_TEMPLATE="missing.html",
        IRON_KYC_VERIFICATION_REDIRECT_WAIT=600,
    )
    assert [m.id for m in found] == [f"iron_kyc.E0{n}" for n in range(17, 22)]
    for message in found:
        assert message.msg.startswith("IRON_KYC_VERIFICATION_")
        assert message.hint
