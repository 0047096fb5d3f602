"""The values an :class:`~django_iron_kyc.client.IronClient` is made from. Private: import
``ClientOptions`` from ``django_iron_kyc.client``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from .conf import iron_settings
from .exceptions import IronConfigurationError
from .validators import (
    Problem,
    api_key_problem,
    base_url_problem,
    ca_bundle_problem,
    proxy_url_problem,
    url_host,
)

_T = TypeVar("_T")


@dataclass(frozen=True)
class ClientOptions:
    """What an :class:`~django_iron_kyc.client.IronClient` is made from, checked when made.

    Build it with :meth:`from_settings`. A value that would leak the key (plain http to a
    host that is not loopback) or cannot work raises ``IronConfigurationError``, whose
    message never repeats the key or the proxy's credentials; neither is in the repr.
    """

    api_key: str = field(repr=False)
    base_url: str
    timeout: tuple[float, float]
    api_version: str | None
    sub_partner_id: str | None
    max_retries: int
    backoff_factor: float
    retry_after_max: float
    proxy: str | None = field(repr=False)
    ca_bundle: str | None

    @classmethod
    def from_settings(
        cls,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | tuple[float, float] | None = None,
        api_version: str | None = None,
        sub_partner_id: str | None = None,
        max_retries: int | None = None,
        backoff_factor: float | None = None,
        retry_after_max: float | None = None,
        proxy: str | None = None,
        ca_bundle: str | None = None,
    ) -> ClientOptions:
        """Each value given, or else its ``IRON_KYC_*`` setting as it is now."""
        if timeout is None:
            timeout = iron_settings.TIMEOUT
        return cls(
            api_key=_given(api_key, iron_settings.API_KEY).strip(),
            base_url=(base_url or iron_settings.BASE_URL).rstrip("/"),
            timeout=(
                (float(timeout), float(timeout))
                if isinstance(timeout, (int, float))
                else (float(timeout[0]), float(timeout[1]))
            ),
            api_version=_given(api_version, iron_settings.API_VERSION),
            sub_partner_id=_given(sub_partner_id, iron_settings.SUB_PARTNER_ID),
            max_retries=_given(max_retries, iron_settings.MAX_RETRIES),
            backoff_factor=_given(backoff_factor, iron_settings.RETRY_BACKOFF),
            retry_after_max=_given(retry_after_max, iron_settings.RETRY_AFTER_MAX),
            proxy=_given(proxy, iron_settings.PROXY) or None,
            ca_bundle=_given(ca_bundle, iron_settings.CA_BUNDLE) or None,
        )

    def __post_init__(self) -> None:
        problem = api_key_problem(self.api_key)
        if problem is Problem.API_KEY_MISSING:
            raise IronConfigurationError("IRON_KYC_API_KEY is not set.")
        if problem:
            raise IronConfigurationError(f"IRON_KYC_API_KEY {problem}.")
        if self.proxy and (problem := proxy_url_problem(self.proxy)):
            raise IronConfigurationError(f"IRON_KYC_PROXY {problem}.")
        if self.ca_bundle and (problem := ca_bundle_problem(self.ca_bundle)):
            raise IronConfigurationError(f"IRON_KYC_CA_BUNDLE {self.ca_bundle!r} {problem}.")
        problem = base_url_problem(self.base_url)
        if problem is Problem.BASE_URL_PLAIN_HTTP:
            raise IronConfigurationError(
                f"IRON_KYC_BASE_URL uses plain http to {url_host(self.base_url)}; only https "
                "(or a loopback fake) may carry the API key."
            )
        if problem:
            raise IronConfigurationError(f"IRON_KYC_BASE_URL {problem}.")


def _given(value: _T | None, default: _T) -> _T:
    return default if value is None else value
