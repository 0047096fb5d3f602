"""The client's options (ClientOptions, the private _client_options): the settings or the
keywords given, each checked when the client is made, proxy and CA bundle included."""

from __future__ import annotations

import dataclasses

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_iron_kyc.client import ClientOptions, IronClient
from django_iron_kyc.exceptions import (
    IronConfigurationError,
)
from tests.client.support import (
    API_KEY,
    BASE,
    CUSTOMER_ID,
    CUSTOMERS,
    PROXY_ENVIRONMENT,
    PROXY_PASSWORD,
    PROXY_USER,
    call_each_method,
    client,
    register_each_method,
)

# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "   "])
def test_client_refuses_a_missing_api_key(key):
    with override_settings(IRON_KYC_API_KEY=key), pytest.raises(IronConfigurationError):
        IronClient()


def test_configuration_error_is_improperly_configured():
    with pytest.raises(ImproperlyConfigured):
        IronClient(api_key="")


def test_api_key_with_control_characters_is_refused_without_echoing_it():
    with pytest.raises(IronConfigurationError) as info:
        IronClient(api_key="sk-secret\nX-Evil: 1")
    assert "sk-secret" not in str(info.value)


def test_surrounding_whitespace_in_the_api_key_is_dropped(mocked):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", json={})

    IronClient(api_key=" key-from-env-file\n").get_customer(CUSTOMER_ID)
    assert mocked.calls[0].request.headers["X-API-Key"] == "key-from-env-file"


@pytest.mark.parametrize(
    "base_url", ["http://api.iron.xyz", "ftp://api.iron.xyz", "api.iron.xyz", "http://"]
)
def test_client_refuses_a_base_url_that_would_leak_the_key(base_url):
    with pytest.raises(IronConfigurationError):
        IronClient(base_url=base_url)


@pytest.mark.parametrize("base_url", ["http://localhost:8000", "http://[::1]:9", BASE])
def test_client_allows_plain_http_to_loopback(base_url):
    assert IronClient(base_url=base_url).base_url == base_url


def test_timeout_given_as_one_number_applies_to_connect_and_read():
    assert IronClient(timeout=3).timeout == (3.0, 3.0)


@override_settings(
    IRON_KYC_BASE_URL="https://api.iron.xyz/",
    IRON_KYC_TIMEOUT=4,
    IRON_KYC_MAX_RETRIES=3,
    IRON_KYC_PROXY="http://proxy-user:pr0xy-s3cret@proxy.internal:3128",
)
def test_client_options_are_the_settings_with_what_is_given_in_their_place():
    options = ClientOptions.from_settings(max_retries=0, api_version="2025-03-13")

    assert (options.api_key, options.base_url, options.timeout) == (
        API_KEY,
        "https://api.iron.xyz",
        (4.0, 4.0),
    )
    assert (options.max_retries, options.api_version, options.sub_partner_id) == (
        0,
        "2025-03-13",
        None,
    )
    assert IronClient(max_retries=0, api_version="2025-03-13").options == options
    assert API_KEY not in repr(options)
    assert "pr0xy-s3cret" not in repr(options)
    with pytest.raises(AttributeError):
        options.api_key = "other"  # type: ignore[misc]


def test_client_options_are_checked_however_they_are_made():
    options = ClientOptions.from_settings()

    with pytest.raises(IronConfigurationError, match="IRON_KYC_BASE_URL"):
        dataclasses.replace(options, base_url="http://api.iron.xyz")
    with pytest.raises(IronConfigurationError, match="IRON_KYC_API_KEY"):
        dataclasses.replace(options, api_key="sk live")


# --- IRON_KYC_PROXY and IRON_KYC_CA_BUNDLE ----------------------------------------------------


def test_proxy_and_ca_bundle_settings_reach_every_request(mocked, tmp_path):
    bundle = tmp_path / "private-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    proxy = "http://proxy.internal:3128"
    register_each_method(mocked)

    with override_settings(IRON_KYC_PROXY=proxy, IRON_KYC_CA_BUNDLE=str(bundle)):
        call_each_method(client())

    assert len(mocked.calls) == 7
    for call in mocked.calls:
        assert call.request.req_kwargs["proxies"] == {"http": proxy, "https": proxy}
        assert call.request.req_kwargs["verify"] == str(bundle)


def test_environment_proxies_and_ca_bundles_are_ignored(mocked, monkeypatch, tmp_path):
    bundle = tmp_path / "env-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    for name in PROXY_ENVIRONMENT:
        monkeypatch.setenv(name, "http://env-proxy.internal:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bundle))
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", json={})

    client().get_customer(CUSTOMER_ID)

    assert mocked.calls[0].request.req_kwargs["proxies"] == {}
    assert mocked.calls[0].request.req_kwargs["verify"] is True


def test_ca_bundle_set_to_false_never_turns_verification_off(mocked):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", json={})

    with override_settings(IRON_KYC_CA_BUNDLE=False):
        client().get_customer(CUSTOMER_ID)

    assert mocked.calls[0].request.req_kwargs["verify"] is True


@pytest.mark.parametrize(
    "proxy",
    [
        f"ftp://{PROXY_USER}:{PROXY_PASSWORD}@proxy.internal",
        f"{PROXY_USER}:{PROXY_PASSWORD}@proxy.internal:3128",
        f"http://{PROXY_USER}:{PROXY_PASSWORD}@:3128",
        f"http://{PROXY_USER}:{PROXY_PASSWORD}\u20ac@proxy.internal:3128",
    ],
)
def test_client_refuses_a_bad_proxy_without_echoing_it(proxy):
    with override_settings(IRON_KYC_PROXY=proxy), pytest.raises(IronConfigurationError) as info:
        IronClient()
    assert "IRON_KYC_PROXY" in str(info.value)
    assert PROXY_PASSWORD not in str(info.value)
    assert PROXY_PASSWORD not in repr(info.value)


def test_client_refuses_a_ca_bundle_that_is_not_a_file(tmp_path):
    with pytest.raises(IronConfigurationError, match="IRON_KYC_CA_BUNDLE"):
        IronClient(ca_bundle=str(tmp_path / "missing.pem"))
    with pytest.raises(IronConfigurationError, match="IRON_KYC_CA_BUNDLE"):
        IronClient(ca_bundle=str(tmp_path))
