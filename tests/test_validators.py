"""The setting rules, each written once: what each accepts, what it refuses, and that no
answer repeats the value."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from django_iron_kyc.validators import (
    Problem,
    api_key_problem,
    base_url_problem,
    ca_bundle_problem,
    is_loopback_host,
    proxy_url_problem,
    url_host,
    webhook_secret_key,
    webhook_secret_problem,
)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("api.iron.xyz", False),
        ("127.0.0.1.example.com", False),
        ("0.0.0.0", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback_host(host, loopback):
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://api.iron.xyz/", "api.iron.xyz"),
        ("http://[::1]:8001", "::1"),
        ("api.iron.xyz", None),
        ("http://[::1", None),
        (None, None),
    ],
)
def test_url_host_is_none_for_what_does_not_parse(url, host):
    assert url_host(url) == host


def test_a_problem_reads_as_the_end_of_a_sentence_about_the_setting():
    problem = Problem.PROXY_NO_HOST
    assert str(problem) == f"{problem}" == "has no host"
    assert f"IRON_KYC_PROXY {problem}." == "IRON_KYC_PROXY has no host."


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("sk_live_abc123", None),
        (" key-from-env-file\n", None),
        ("", Problem.API_KEY_MISSING),
        ("   ", Problem.API_KEY_MISSING),
        (None, Problem.API_KEY_MISSING),
        (123, Problem.API_KEY_MISSING),
        ("sk live", Problem.API_KEY_NOT_A_HEADER),
        ("sk\nX-Evil: 1", Problem.API_KEY_NOT_A_HEADER),
        ("sk_\u00e9", Problem.API_KEY_NOT_A_HEADER),
        ("sk\x00", Problem.API_KEY_NOT_A_HEADER),
    ],
)
def test_api_key_must_be_sendable_as_a_header(key, problem):
    assert api_key_problem(key) is problem


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://api.iron.xyz", None),
        ("https://api.sandbox.iron.xyz/", None),
        ("http://127.0.0.1:8001", None),
        ("http://localhost", None),
        ("http://[::1]:9", None),
        ("http://api.iron.xyz", Problem.BASE_URL_PLAIN_HTTP),
        ("http://10.0.0.5:8000", Problem.BASE_URL_PLAIN_HTTP),
        ("ftp://api.iron.xyz", Problem.BASE_URL_NOT_HTTP),
        ("api.iron.xyz", Problem.BASE_URL_NOT_HTTP),
        ("https://", Problem.BASE_URL_NOT_HTTP),
        ("http://[::1", Problem.BASE_URL_NOT_HTTP),
        ("", Problem.BASE_URL_NOT_HTTP),
        (None, Problem.BASE_URL_NOT_HTTP),
    ],
)
def test_base_url_is_https_or_plain_http_to_loopback(url, problem):
    assert base_url_problem(url) is problem


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://proxy.internal:3128", None),
        ("https://user:p%40ss@proxy.internal", None),
        ("http://user:pr0xy-pass@127.0.0.1:3128", None),
        ({"https": "http://proxy.internal:3128"}, Problem.PROXY_NOT_A_STRING),
        ("http://user:pr0xy-pass@proxy.internal:port", Problem.PROXY_NOT_A_URL),
        ("http://[::1", Problem.PROXY_NOT_A_URL),
        ("socks5://user:pr0xy-pass@proxy.internal:1080", Problem.PROXY_NOT_HTTP),
        ("proxy.internal:3128", Problem.PROXY_NOT_HTTP),
        ("http://user:pr0xy-pass@:3128", Problem.PROXY_NO_HOST),
        ("http://user:pr0xy-pass\u20ac@proxy.internal:3128", Problem.PROXY_CREDENTIALS_NOT_LATIN1),
    ],
)
def test_proxy_is_an_http_url_with_a_host_and_latin1_credentials(url, problem):
    assert proxy_url_problem(url) is problem


def test_ca_bundle_is_the_path_of_an_existing_file(tmp_path: Path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert ca_bundle_problem(str(bundle)) is None
    assert ca_bundle_problem(bundle) is None
    for value in (str(tmp_path / "missing.pem"), str(tmp_path), False, True, 5, None):
        assert ca_bundle_problem(value) is Problem.CA_BUNDLE_NOT_A_FILE


def test_webhook_secret_whsec_is_base64_and_any_other_is_utf8():
    raw = b"\x00\x01binary-key\xff"
    assert webhook_secret_key("whsec_" + base64.b64encode(raw).decode()) == raw
    assert webhook_secret_key("caf\u00e9") == "caf\u00e9".encode()
    assert webhook_secret_problem("whsec_b2xkX3NlY3JldA==") is None
    assert webhook_secret_problem("plain-secret") is None


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("whsec_not*base64!", Problem.WEBHOOK_SECRET_NOT_BASE64),
        ("whsec_a", Problem.WEBHOOK_SECRET_NOT_BASE64),
        ("whsec_", Problem.WEBHOOK_SECRET_NOT_BASE64),
        ("", Problem.WEBHOOK_SECRET_EMPTY),
    ],
)
def test_webhook_secret_without_a_usable_key(secret, problem):
    assert webhook_secret_key(secret) is None
    assert webhook_secret_problem(secret) is problem


def test_no_problem_repeats_the_value():
    """Problems are fixed phrases: a secret given to a rule cannot come back in one."""
    found = [
        api_key_problem("sk\nsecret-key"),
        proxy_url_problem("ftp://user:pr0xy-pass@proxy.internal"),
        webhook_secret_problem("whsec_s3cret!"),
    ]
    assert all(isinstance(problem, Problem) for problem in found)
    shown = " ".join(str(problem) for problem in found)
    assert "secret-key" not in shown
    assert "pr0xy-pass" not in shown
    assert "s3cret" not in shown
