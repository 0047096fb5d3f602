"""iron_settings: typed, read when used and kept until a setting changes, with the documented
defaults."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from django_iron_kyc.conf import IronKycSettings, iron_settings


@pytest.fixture
def bare_settings():
    """No IRON_KYC_* setting at all, as in a host project that set none."""
    # Deleted by hand: no setting_changed is sent, so iron_settings reads them again when told.
    try:
        with override_settings():
            for name in dir(settings):
                if name.startswith("IRON_KYC_"):
                    delattr(settings, name)
            iron_settings.reload()
            yield
    finally:
        iron_settings.reload()


def test_defaults(bare_settings):
    assert iron_settings.API_KEY == ""
    assert iron_settings.BASE_URL == "https://api.sandbox.iron.xyz"
    assert iron_settings.TIMEOUT == (5.0, 30.0)
    assert iron_settings.API_VERSION is None
    assert iron_settings.SUB_PARTNER_ID is None
    assert iron_settings.PROXY is None
    assert iron_settings.CA_BUNDLE is None
    assert iron_settings.MAX_RETRIES == 2
    assert iron_settings.RETRY_BACKOFF == 0.5
    assert iron_settings.RETRY_AFTER_MAX == 10.0
    assert iron_settings.IDEMPOTENCY_KEY_MAX_AGE == timedelta(hours=23)
    assert iron_settings.WEBHOOK_SECRETS == []
    assert iron_settings.WEBHOOK_TOLERANCE == 300
    assert iron_settings.WEBHOOK_MAX_BODY_SIZE == 65536
    assert iron_settings.POLL_FIRST_DELAY == timedelta(seconds=60)
    assert iron_settings.POLL_MAX_INTERVAL == timedelta(hours=6)
    assert iron_settings.POLL_MAX_AGE == timedelta(days=30)
    assert iron_settings.POLL_BATCH_SIZE == 100
    assert iron_settings.TASK_MAX_RETRIES == 8
    assert iron_settings.DELIVERY_RETENTION == timedelta(days=30)
    # The default host is Iron's sandbox, so sandbox actions are on by default.
    assert iron_settings.SANDBOX_ACTIONS is True
    assert iron_settings.SANDBOX_ACTIONS_SETTING is None


def test_every_setting_reads_without_error_from_defaults(bare_settings):
    for name in dir(IronKycSettings):
        if name.isupper():
            getattr(iron_settings, name)


def test_override_settings_is_seen_at_once():
    assert iron_settings.API_KEY == settings.IRON_KYC_API_KEY
    with override_settings(IRON_KYC_API_KEY="changed", IRON_KYC_WEBHOOK_TOLERANCE=60):
        assert iron_settings.API_KEY == "changed"
        assert iron_settings.WEBHOOK_TOLERANCE == 60
    assert iron_settings.API_KEY == settings.IRON_KYC_API_KEY


def test_settings_are_kept_until_an_iron_kyc_setting_changes():
    assert iron_settings.WEBHOOK_TOLERANCE == 300
    try:
        with override_settings():
            # Assigned by hand: no setting_changed, the value read before stands...
            settings.IRON_KYC_WEBHOOK_TOLERANCE = 5
            assert iron_settings.WEBHOOK_TOLERANCE == 300
            with override_settings(USE_I18N=not settings.USE_I18N):  # another app's
                assert iron_settings.WEBHOOK_TOLERANCE == 300
            # ...until reload() (what example_project/demo/runtime.py calls after assigning).
            iron_settings.reload()
            assert iron_settings.WEBHOOK_TOLERANCE == 5
            with override_settings(IRON_KYC_WEBHOOK_TOLERANCE=42):
                assert iron_settings.WEBHOOK_TOLERANCE == 42
            assert iron_settings.WEBHOOK_TOLERANCE == 5
    finally:
        iron_settings.reload()
    assert iron_settings.WEBHOOK_TOLERANCE == 300


def test_a_fresh_settings_object_agrees_with_the_shared_one():
    with override_settings(IRON_KYC_BASE_URL="https://api.iron.xyz"):
        assert IronKycSettings().BASE_URL == iron_settings.BASE_URL == "https://api.iron.xyz"


def test_api_key_that_is_not_a_string_reads_as_empty():
    with override_settings(IRON_KYC_API_KEY=12345):
        assert iron_settings.API_KEY == ""


def test_base_url_loses_its_trailing_slash():
    with override_settings(IRON_KYC_BASE_URL="https://api.iron.xyz/"):
        assert iron_settings.BASE_URL == "https://api.iron.xyz"
        assert iron_settings.base_host == "api.iron.xyz"
        assert iron_settings.is_production_host


@pytest.mark.parametrize(
    ("base_url", "sandbox_actions"),
    [
        ("https://api.sandbox.iron.xyz", True),
        ("http://127.0.0.1:8001", True),
        ("http://127.5.6.7", True),
        ("http://localhost:8001", True),
        ("http://[::1]:8001", True),
        ("https://api.iron.xyz", False),
        ("https://iron.example.com", False),
        ("http://10.0.0.1", False),
    ],
)
def test_sandbox_actions_default_follows_the_host(base_url, sandbox_actions):
    with override_settings(IRON_KYC_BASE_URL=base_url):
        assert iron_settings.SANDBOX_ACTIONS is sandbox_actions


def test_sandbox_actions_forced_on_is_refused_for_the_production_host():
    with override_settings(IRON_KYC_BASE_URL="https://api.iron.xyz", IRON_KYC_SANDBOX_ACTIONS=True):
        assert iron_settings.SANDBOX_ACTIONS is False
        assert iron_settings.SANDBOX_ACTIONS_SETTING is True


def test_sandbox_actions_can_be_forced_off_on_the_sandbox():
    with override_settings(
        IRON_KYC_BASE_URL="https://api.sandbox.iron.xyz", IRON_KYC_SANDBOX_ACTIONS=False
    ):
        assert iron_settings.SANDBOX_ACTIONS is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [(10, (10.0, 10.0)), (2.5, (2.5, 2.5)), ((3, 30), (3.0, 30.0)), ([1, 2], (1.0, 2.0))],
)
def test_timeout_is_a_number_or_a_connect_read_pair(value, expected):
    with override_settings(IRON_KYC_TIMEOUT=value):
        assert iron_settings.TIMEOUT == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("one", ["one"]),
        (["new", "old"], ["new", "old"]),
        (("new", "", "old"), ["new", "old"]),
        ("", []),
        (None, []),
    ],
)
def test_webhook_secret_is_a_string_or_a_list(value, expected):
    with override_settings(IRON_KYC_WEBHOOK_SECRET=value):
        assert iron_settings.WEBHOOK_SECRETS == expected


def test_optional_headers_are_none_when_empty():
    with override_settings(IRON_KYC_API_VERSION="", IRON_KYC_SUB_PARTNER_ID=None):
        assert iron_settings.API_VERSION is None
        assert iron_settings.SUB_PARTNER_ID is None
    with override_settings(IRON_KYC_API_VERSION="2026-07-01"):
        assert iron_settings.API_VERSION == "2026-07-01"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("http://proxy.internal:3128", "http://proxy.internal:3128")],
)
def test_proxy_is_a_url_or_none(value, expected):
    with override_settings(IRON_KYC_PROXY=value):
        assert iron_settings.PROXY == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        # False cannot turn verification off: it reads as "no bundle of my own" (and E015).
        (False, None),
        ("/etc/ssl/private-ca.pem", "/etc/ssl/private-ca.pem"),
        (Path("/etc/ssl/private-ca.pem"), "/etc/ssl/private-ca.pem"),
    ],
)
def test_ca_bundle_is_a_path_or_none(value, expected):
    with override_settings(IRON_KYC_CA_BUNDLE=value):
        assert iron_settings.CA_BUNDLE == expected


def test_durations_are_read_as_seconds():
    with override_settings(IRON_KYC_POLL_FIRST_DELAY=5, IRON_KYC_IDEMPOTENCY_KEY_MAX_AGE=3600.0):
        assert iron_settings.POLL_FIRST_DELAY == timedelta(seconds=5)
        assert iron_settings.IDEMPOTENCY_KEY_MAX_AGE == timedelta(hours=1)


@pytest.mark.parametrize(
    ("value", "read"),
    [(timedelta(days=7), timedelta(days=7)), (86400, timedelta(days=1)), (None, None)],
)
def test_delivery_retention_is_a_timedelta_seconds_or_none(settings, value, read):
    settings.IRON_KYC_DELIVERY_RETENTION = value
    assert iron_settings.DELIVERY_RETENTION == read
