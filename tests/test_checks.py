"""System checks: one test per ID, plus clean settings that raise nothing."""

from __future__ import annotations

import inspect
import io
import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from celery import Celery
from celery import _state as celery_state
from django.conf import settings
from django.core.checks import Error, Warning, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django.utils.functional import cached_property

from django_iron_kyc import checks
from django_iron_kyc.conf import IronKycSettings

CLEAN = {
    "IRON_KYC_API_KEY": "sk_live_abc123",
    "IRON_KYC_BASE_URL": "https://api.iron.xyz",
    "IRON_KYC_WEBHOOK_SECRET": "whsec_dGVzdF9zZWNyZXQ=",
}


def iron_messages(**overrides: Any) -> list[Any]:
    """The iron_kyc messages of ``run_checks()`` with CLEAN settings plus ``overrides``."""
    with override_settings(**{**CLEAN, **overrides}):
        return [m for m in run_checks() if str(m.id).startswith("iron_kyc.")]


def ids(**overrides: Any) -> list[str]:
    return [m.id for m in iron_messages(**overrides)]


def without(name: str) -> Any:
    """override_settings() with the setting deleted entirely."""
    return override_settings(**{k: v for k, v in CLEAN.items() if k != name})


def test_clean_settings_pass():
    assert ids() == []


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.sandbox.iron.xyz",
        "https://api.iron.xyz/",
        "http://127.0.0.1:8001",
        "http://localhost:8001",
        "http://[::1]:8001",
    ],
)
def test_good_base_urls_pass(base_url):
    assert ids(IRON_KYC_BASE_URL=base_url) == []


def test_clean_settings_pass_call_command_check():
    with override_settings(**CLEAN):
        call_command("check")


def test_bad_settings_fail_call_command_check_with_the_id():
    with (
        override_settings(**{**CLEAN, "IRON_KYC_API_KEY": 123}),
        pytest.raises(SystemCheckError, match=r"iron_kyc\.E001"),
    ):
        call_command("check")


def test_a_project_without_the_api_key_yet_still_runs_and_is_told_what_is_missing():
    """The README's settings read the key with os.environ.get: unset, it is ""."""
    output = io.StringIO()
    with override_settings(**{**CLEAN, "IRON_KYC_API_KEY": ""}):
        call_command("check", stdout=output, stderr=output)  # no SystemCheckError
    assert "iron_kyc.W004" in output.getvalue()
    assert "IRON_KYC_API_KEY is not set" in output.getvalue()


def test_defaults_with_an_api_key_raise_only_the_webhook_warning():
    with override_settings(IRON_KYC_API_KEY="key"):
        for name in ("IRON_KYC_BASE_URL", "IRON_KYC_WEBHOOK_SECRET", "IRON_KYC_MAX_RETRIES"):
            delattr(settings, name)
        messages = [m for m in run_checks() if str(m.id).startswith("iron_kyc.")]
    assert [m.id for m in messages] == ["iron_kyc.W001"]


@pytest.mark.parametrize("value", [123, ["key"], b"key"])
def test_e001_api_key_not_a_string(value):
    messages = iron_messages(IRON_KYC_API_KEY=value)
    assert [m.id for m in messages] == ["iron_kyc.E001"]
    assert isinstance(messages[0], Error)


@pytest.mark.parametrize("value", ["", "   ", None])
def test_w004_api_key_empty(value):
    messages = iron_messages(IRON_KYC_API_KEY=value)
    assert [m.id for m in messages] == ["iron_kyc.W004"]
    assert isinstance(messages[0], Warning)
    assert "environment variable" in messages[0].hint


def test_w004_api_key_missing():
    with without("IRON_KYC_API_KEY"):
        del settings.IRON_KYC_API_KEY
        found = [m.id for m in run_checks() if str(m.id).startswith("iron_kyc.")]
    assert found == ["iron_kyc.W004"]


def test_w003_no_celery_app_for_the_tasks():
    """No project Celery app imported: the tasks would get Celery's fallback app."""
    with mock.patch.object(celery_state, "default_app", None):
        messages = iron_messages()
    assert [m.id for m in messages] == ["iron_kyc.W003"]
    assert isinstance(messages[0], Warning)
    assert "CELERY_TASK_ALWAYS_EAGER" in messages[0].msg
    assert "config_from_object('django.conf:settings', namespace='CELERY')" in messages[0].hint


def test_w003_celerys_fallback_app_is_the_default():
    # What Celery makes when a task is called with no app of the project's imported.
    fallback = Celery("default", fixups=[], set_as_current=False, loader="default")
    with mock.patch.object(celery_state, "default_app", fallback):
        assert ids() == ["iron_kyc.W003"]
    fallback.close()


def test_w003_not_raised_with_the_projects_celery_app():
    """The suite's tests/celery.py is the standard celery.py, imported by tests/__init__.py."""
    project_app = Celery("yourproject", set_as_current=False)
    project_app.config_from_object("django.conf:settings", namespace="CELERY")
    with mock.patch.object(celery_state, "default_app", project_app):
        assert ids() == []
    project_app.close()


@pytest.mark.parametrize(
    "base_url", ["api.iron.xyz", "ftp://api.iron.xyz", "https://", "http://[::1", None, ""]
)
def test_e002_base_url_not_an_http_url(base_url):
    assert ids(IRON_KYC_BASE_URL=base_url) == ["iron_kyc.E002"]


@pytest.mark.parametrize("base_url", ["http://api.iron.xyz", "http://10.0.0.5:8000"])
def test_e003_plain_http_to_a_non_loopback_host(base_url):
    assert "iron_kyc.E003" in ids(IRON_KYC_BASE_URL=base_url)


@pytest.mark.parametrize(
    "base_url",
    ["https://api.iron.xyz/api", "https://api.iron.xyz/?x=1", "https://api.iron.xyz/#frag"],
)
def test_e004_base_url_with_a_path_query_or_fragment(base_url):
    assert ids(IRON_KYC_BASE_URL=base_url) == ["iron_kyc.E004"]


def test_e005_sandbox_actions_forced_on_with_the_production_host():
    messages = iron_messages(IRON_KYC_SANDBOX_ACTIONS=True)
    assert [m.id for m in messages] == ["iron_kyc.E005"]
    assert isinstance(messages[0], Error)
    assert "api.iron.xyz" in messages[0].msg
    assert messages[0].hint


@pytest.mark.parametrize(
    "base_url", ["https://api.sandbox.iron.xyz", "http://127.0.0.1:8001", "http://localhost"]
)
def test_sandbox_actions_forced_on_with_sandbox_or_loopback_pass(base_url):
    assert ids(IRON_KYC_SANDBOX_ACTIONS=True, IRON_KYC_BASE_URL=base_url) == []


def test_sandbox_actions_forced_off_with_production_pass():
    assert ids(IRON_KYC_SANDBOX_ACTIONS=False) == []


@pytest.mark.parametrize("secret", [123, ["ok", ""], ["ok", 5], {"a": "b"}])
def test_e006_webhook_secret_not_a_string_or_list_of_strings(secret):
    assert ids(IRON_KYC_WEBHOOK_SECRET=secret) == ["iron_kyc.E006"]


def test_webhook_secret_list_for_rotation_passes():
    assert ids(IRON_KYC_WEBHOOK_SECRET=["new-secret", "whsec_b2xkX3NlY3JldA=="]) == []


@pytest.mark.parametrize("secret", ["whsec_not*base64!", "whsec_", ["ok", "whsec_a"]])
def test_e007_whsec_secret_not_base64_or_empty(secret):
    assert ids(IRON_KYC_WEBHOOK_SECRET=secret) == ["iron_kyc.E007"]


@pytest.mark.parametrize("tolerance", [0, -5, 1.5, "300", True])
def test_e008_webhook_tolerance_not_a_positive_int(tolerance):
    assert ids(IRON_KYC_WEBHOOK_TOLERANCE=tolerance) == ["iron_kyc.E008"]


@pytest.mark.parametrize("timeout", [0, -1, "5", (5,), (5, 0), (5, 30, 1), None, True])
def test_e009_timeout_not_a_number_or_pair(timeout):
    assert ids(IRON_KYC_TIMEOUT=timeout) == ["iron_kyc.E009"]


@pytest.mark.parametrize("timeout", [10, 2.5, (3, 30), [3, 30.5]])
def test_timeout_number_or_pair_passes(timeout):
    assert ids(IRON_KYC_TIMEOUT=timeout) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IRON_KYC_MAX_RETRIES", -1),
        ("IRON_KYC_MAX_RETRIES", 1.5),
        ("IRON_KYC_RETRY_BACKOFF", "fast"),
        ("IRON_KYC_POLL_BATCH_SIZE", 0),
        ("IRON_KYC_WEBHOOK_MAX_BODY_SIZE", True),
        ("IRON_KYC_POLL_MAX_AGE", None),
    ],
)
def test_e010_numeric_setting_of_the_wrong_type_or_range(name, value):
    messages = iron_messages(**{name: value})
    assert [m.id for m in messages] == ["iron_kyc.E010"]
    assert name in messages[0].msg


@pytest.mark.parametrize("max_age", [86400, 90000])
def test_e011_idempotency_key_max_age_not_under_24_hours(max_age):
    assert ids(IRON_KYC_IDEMPOTENCY_KEY_MAX_AGE=max_age) == ["iron_kyc.E011"]


@pytest.mark.parametrize("value", ["false", 1, "yes"])
def test_e012_sandbox_actions_not_a_bool(value):
    assert ids(IRON_KYC_SANDBOX_ACTIONS=value, IRON_KYC_BASE_URL="http://127.0.0.1") == [
        "iron_kyc.E012"
    ]


@pytest.mark.parametrize("value", ["Deferred", "celery", None, True])
def test_e016_webhook_processing_not_a_known_mode(value):
    assert ids(IRON_KYC_WEBHOOK_PROCESSING=value) == ["iron_kyc.E016"]


@pytest.mark.parametrize("value", ["inline", "deferred"])
def test_webhook_processing_modes_pass(value):
    assert ids(IRON_KYC_WEBHOOK_PROCESSING=value) == []


@pytest.mark.parametrize(
    "value", [timedelta(hours=23), timedelta(0), 3600, 0, -1, True, "30 days", 1e300]
)
def test_e022_delivery_retention_not_a_day_or_more(value):
    assert ids(IRON_KYC_DELIVERY_RETENTION=value) == ["iron_kyc.E022"]


@pytest.mark.parametrize("value", [None, timedelta(days=1), timedelta(days=90), 86400, 2.6e6])
def test_delivery_retention_of_a_day_or_more_or_none_passes(value):
    assert ids(IRON_KYC_DELIVERY_RETENTION=value) == []


@pytest.mark.parametrize("key", ["sk live", "sk\nX-Evil: 1", "sk_é"])
def test_e013_api_key_that_cannot_be_a_header(key):
    messages = iron_messages(IRON_KYC_API_KEY=key)
    assert [m.id for m in messages] == ["iron_kyc.E013"]
    assert key not in messages[0].msg


@pytest.mark.parametrize(
    "proxy",
    [
        "proxy.internal:3128",
        "socks5://user:pr0xy-pass@proxy.internal:1080",
        "http://user:pr0xy-pass@:3128",
        "http://user:pr0xy-pass@proxy.internal:port",
        "http://user:pr0xy-pass\u20ac@proxy.internal:3128",
        "http://[::1",
        {"https": "http://proxy.internal:3128"},
    ],
)
def test_e014_proxy_not_an_http_url_with_a_host(proxy):
    messages = iron_messages(IRON_KYC_PROXY=proxy)
    assert [m.id for m in messages] == ["iron_kyc.E014"]
    assert "pr0xy-pass" not in messages[0].msg
    assert "proxy.internal" not in messages[0].msg


@pytest.mark.parametrize(
    "proxy",
    [
        None,
        "",
        "http://proxy.internal:3128",
        "https://user:p%40ss@proxy.internal",
        "http://127.0.0.1:3128",
    ],
)
def test_proxy_unset_or_an_http_url_passes(proxy):
    assert ids(IRON_KYC_PROXY=proxy) == []


@pytest.mark.parametrize("ca_bundle", ["/nonexistent/ca.pem", ".", False, True, 5])
def test_e015_ca_bundle_not_an_existing_file(ca_bundle):
    messages = iron_messages(IRON_KYC_CA_BUNDLE=ca_bundle)
    assert [m.id for m in messages] == ["iron_kyc.E015"]
    assert "cannot be turned off" in messages[0].hint


def test_ca_bundle_unset_or_an_existing_file_passes(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    for value in (None, "", str(bundle), bundle):
        assert ids(IRON_KYC_CA_BUNDLE=value) == []


@pytest.mark.parametrize("secret", [None, "", []])
def test_w001_webhook_secret_missing(secret):
    messages = iron_messages(IRON_KYC_WEBHOOK_SECRET=secret)
    assert [m.id for m in messages] == ["iron_kyc.W001"]
    assert isinstance(messages[0], Warning)


def test_w002_unknown_iron_host():
    messages = iron_messages(IRON_KYC_BASE_URL="https://iron.example.com")
    assert [m.id for m in messages] == ["iron_kyc.W002"]
    assert isinstance(messages[0], Warning)


def test_w002_can_be_silenced():
    proxied = {**CLEAN, "IRON_KYC_BASE_URL": "https://iron-proxy.example.com"}
    with override_settings(**proxied), pytest.raises(SystemCheckError, match="W002"):
        call_command("check", fail_level="WARNING")
    with override_settings(**proxied, SILENCED_SYSTEM_CHECKS=["iron_kyc.W002"]):
        call_command("check", fail_level="WARNING")


def test_every_message_has_a_hint():
    bad = {
        "IRON_KYC_API_KEY": "",
        "IRON_KYC_BASE_URL": "http://iron.example.com/api",
        "IRON_KYC_SANDBOX_ACTIONS": "yes",
        "IRON_KYC_WEBHOOK_TOLERANCE": 0,
        "IRON_KYC_TIMEOUT": "x",
        "IRON_KYC_MAX_RETRIES": -1,
        "IRON_KYC_IDEMPOTENCY_KEY_MAX_AGE": 99999,
        "IRON_KYC_PROXY": "ftp://proxy.internal",
        "IRON_KYC_CA_BUNDLE": "/nonexistent/ca.pem",
    }
    messages = iron_messages(**bad)
    assert len(messages) >= 10
    assert all(m.hint for m in messages)


def test_every_setting_is_checked():
    """A setting added to conf.py needs a check (STYLE habit 2): each one without a dedicated
    check below is refused, by name, when set to something no setting takes."""
    dedicated = {
        "API_KEY",
        "BASE_URL",
        "TIMEOUT",
        "WEBHOOK_SECRETS",
        "WEBHOOK_TOLERANCE",
        "SANDBOX_ACTIONS",
        "SANDBOX_ACTIONS_SETTING",
        "WEBHOOK_PROCESSING",
        "WEBHOOK_DEFERRED",  # derived from WEBHOOK_PROCESSING
        "PROXY",
        "CA_BUNDLE",
        # Free-form strings sent as headers; any value is acceptable.
        "API_VERSION",
        "SUB_PARTNER_ID",
        # The end-user endpoint and page's (tests/enduser/test_checks.py).
        "VERIFICATION_CUSTOMER_DATA",
        "VERIFICATION_ALLOW_EDD",
        "VERIFICATION_THROTTLE_RATE",
        "VERIFICATION_BASE_TEMPLATE",
        "VERIFICATION_REDIRECT_WAIT",
    }
    names = {
        name
        for name, member in inspect.getmembers(IronKycSettings)
        if name.isupper() and isinstance(member, cached_property)
    }
    unchecked = [
        name
        for name in sorted(names - dedicated)
        if not any(
            f"IRON_KYC_{name} " in m.msg for m in iron_messages(**{f"IRON_KYC_{name}": object()})
        )
    ]
    assert not unchecked, (
        f"IRON_KYC_ settings without a system check: {unchecked}; add numeric ones to "
        "django_iron_kyc.checks' number settings (iron_kyc.E010), others to a dedicated check."
    )


def test_every_check_id_is_in_the_readme_table():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(iron_kyc\.[EW]\d{3})` \|", readme, re.M))
    sources = (Path(checks.__file__).parent).glob("*.py")
    raised = {
        check_id
        for source in sources
        for check_id in re.findall(r'"(iron_kyc\.[EW]\d{3})"', source.read_text(encoding="utf-8"))
    }
    assert raised == documented
