"""The Iron HTTP client: the only module in this app that speaks HTTP.

It knows nothing of models. It sends ``X-API-Key`` and a User-Agent on every call, an
``IDEMPOTENCY-KEY`` on every POST, a timeout on every call, never follows redirects (so the
key never travels to another host) and turns every error Iron can answer with into one
:class:`~django_iron_kyc.exceptions.IronAPIError`.

429, 5xx and connection errors are retried inside the request with urllib3's ``Retry``
(exponential backoff with jitter, ``Retry-After`` honoured up to
``IRON_KYC_RETRY_AFTER_MAX``). POSTs are retried too: each carries an idempotency key, so
a retry can never create a second record. What is still failing afterwards is raised as
:class:`~django_iron_kyc.exceptions.IronTransientError` for Celery to retry later.

Proxies and CA bundles come only from ``IRON_KYC_PROXY`` and ``IRON_KYC_CA_BUNDLE``, never from
the environment (``HTTPS_PROXY``, ``REQUESTS_CA_BUNDLE``, ``.netrc``), and TLS is always verified.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from . import __version__
from .conf import iron_settings
from .exceptions import IronAPIError, IronConfigurationError, IronTransientError
from .validators import (
    Problem,
    api_key_problem,
    base_url_problem,
    ca_bundle_problem,
    proxy_url_problem,
    url_host,
)

if TYPE_CHECKING:
    from typing_extensions import Self
    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse

logger = logging.getLogger(__name__)

USER_AGENT = f"django-iron-kyc/{__version__} python-requests/{requests.__version__}"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
JSON_CONTENT_TYPE = "application/json; charset=utf-8"

IronObject = dict[str, Any]


class _IronRetry(Retry):
    """urllib3 ``Retry`` that gives up at once on a ``Retry-After`` longer than we will wait.

    A worker should not sleep for minutes inside a request: the response is returned as it
    is, becomes ``IronTransientError`` with ``retry_after`` set, and the caller (a Celery
    task) schedules the retry itself. An unreadable ``Retry-After`` also ends the retries
    (urllib3 would otherwise raise ``InvalidHeader`` while sleeping).
    """

    # Only these statuses are retried because of a Retry-After header (urllib3 adds 413).
    RETRY_AFTER_STATUS_CODES = frozenset({429, 503})

    give_up_after: float = 10.0

    def new(self, **kw: Any) -> Self:
        new = super().new(**kw)
        new.give_up_after = self.give_up_after
        return new

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if response is not None:
            header = response.headers.get("Retry-After")
            if header is not None:
                seconds = _parse_retry_after(header)
                if seconds is None or seconds > self.give_up_after:
                    # With raise_on_status=False urllib3 hands back this response unchanged.
                    reason = ResponseError("Retry-After too long")
                    raise MaxRetryError(_pool, url, reason)  # type: ignore[arg-type]
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def parse_retry_after(self, retry_after: str) -> float:
        # Same reading as ``increment`` (urllib3's own refuses fractions such as "1.5").
        return _parse_retry_after(retry_after) or 0.0


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if seconds != seconds or seconds < 0:  # NaN or in the past
        return 0.0
    return min(seconds, 86400.0)


class IronClient:
    """A client for Iron's customer and identification API.

    Settings are read when the client is made: ``IRON_KYC_API_KEY``, ``IRON_KYC_BASE_URL``,
    ``IRON_KYC_TIMEOUT``, ``IRON_KYC_API_VERSION``, ``IRON_KYC_SUB_PARTNER_ID``,
    ``IRON_KYC_MAX_RETRIES``, ``IRON_KYC_PROXY``, ``IRON_KYC_CA_BUNDLE``. Any of them can be
    given as keyword arguments instead.

    Every method returns Iron's JSON object as a ``dict`` and raises ``IronAPIError`` (or
    its transient subclass) on failure.
    """

    def __init__(
        self,
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
    ) -> None:
        key = (api_key if api_key is not None else iron_settings.API_KEY).strip()
        problem = api_key_problem(key)
        if problem is Problem.API_KEY_MISSING:
            raise IronConfigurationError("IRON_KYC_API_KEY is not set.")
        if problem:
            raise IronConfigurationError(f"IRON_KYC_API_KEY {problem}.")
        proxy = proxy if proxy is not None else iron_settings.PROXY
        if proxy and (problem := proxy_url_problem(proxy)):
            raise IronConfigurationError(f"IRON_KYC_PROXY {problem}.")
        # What an error page may echo back; longest first, so no part is left half-replaced.
        self._secrets = sorted({key, *_proxy_credentials(proxy or "")}, key=len, reverse=True)
        ca_bundle = ca_bundle if ca_bundle is not None else iron_settings.CA_BUNDLE
        if ca_bundle and (problem := ca_bundle_problem(ca_bundle)):
            raise IronConfigurationError(f"IRON_KYC_CA_BUNDLE {ca_bundle!r} {problem}.")
        self.base_url = (base_url or iron_settings.BASE_URL).rstrip("/")
        _check_base_url(self.base_url)
        if timeout is None:
            timeout = iron_settings.TIMEOUT
        self.timeout: tuple[float, float] = (
            (float(timeout), float(timeout))
            if isinstance(timeout, (int, float))
            else (float(timeout[0]), float(timeout[1]))
        )
        retries = iron_settings.MAX_RETRIES if max_retries is None else max_retries
        backoff = iron_settings.RETRY_BACKOFF if backoff_factor is None else backoff_factor
        retry = _IronRetry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            other=0,
            redirect=False,
            allowed_methods=frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"}),
            status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff,
            backoff_jitter=backoff / 2,
            backoff_max=30.0,
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
        )
        retry.give_up_after = (
            iron_settings.RETRY_AFTER_MAX if retry_after_max is None else retry_after_max
        )
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies or .netrc credentials picked up silently
        if proxy:
            self.session.proxies = {"http": proxy, "https": proxy}
        if ca_bundle:
            self.session.verify = ca_bundle  # a path: never False, so TLS is always verified
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(
            {
                "X-API-Key": key,
                "User-Agent": USER_AGENT,
                "Accept": JSON_CONTENT_TYPE,
            }
        )
        version = api_version if api_version is not None else iron_settings.API_VERSION
        if version:
            self.session.headers["X-API-Version"] = version
        sub_partner = sub_partner_id if sub_partner_id is not None else iron_settings.SUB_PARTNER_ID
        if sub_partner:
            self.session.headers["X-SUB-PARTNER-ID"] = sub_partner

    def __repr__(self) -> str:
        return f"<IronClient {self.base_url}>"

    __str__ = __repr__

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> IronClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- customers --------------------------------------------------------------------

    def create_customer(
        self,
        *,
        email: str,
        idempotency_key: uuid.UUID | str,
        customer_type: str = "Person",
        name: str | None = None,
        external_id: str | None = None,
    ) -> IronObject:
        """``POST /api/customers``: create a customer; Iron answers 201 with it."""
        body: dict[str, Any] = {"customer_type": customer_type, "email": email}
        if name:
            body["name"] = name
        if external_id:
            body["external_id"] = external_id
        return self._object(
            "POST", "/api/customers", json_body=body, idempotency_key=idempotency_key
        )

    def get_customer(self, customer_iron_id: uuid.UUID | str) -> IronObject:
        """``GET /api/customers/{id}``."""
        return self._object("GET", f"/api/customers/{_seg(customer_iron_id)}")

    # --- identifications --------------------------------------------------------------

    def create_identification(
        self,
        customer_iron_id: uuid.UUID | str,
        *,
        idempotency_key: uuid.UUID | str,
        with_edd: bool = False,
    ) -> IronObject:
        """``POST /api/customers/{id}/identifications/v2`` with ``{"type": "Link"}``.

        Call it again only with the same ``idempotency_key`` (a retry of the same intent),
        never to refresh the status: each new key creates a new identification at Iron.
        """
        body: dict[str, Any] = {"type": "Link"}
        if with_edd:
            body["with_edd"] = True
        return self._object(
            "POST",
            f"/api/customers/{_seg(customer_iron_id)}/identifications/v2",
            json_body=body,
            idempotency_key=idempotency_key,
        )

    def iter_identifications(
        self, customer_iron_id: uuid.UUID | str, *, page_size: int = 100
    ) -> Iterator[IronObject]:
        """``GET /api/customers/{id}/identifications``, following ``cursor`` pages.

        Yields every identification of the customer, in Iron's order (which Iron does not
        document: sort by ``created_at`` if order matters). Stops at an absent or null
        cursor, an empty page, or a cursor seen before.
        """
        path = f"/api/customers/{_seg(customer_iron_id)}/identifications"
        params: dict[str, Any] = {"page_size": max(1, min(int(page_size), 100))}
        seen: set[str] = set()
        while True:
            page = self._object("GET", path, params=params)
            items = page.get("items") or []
            if not isinstance(items, list):
                raise IronAPIError(
                    "Iron's identification list has no 'items' list.",
                    status=200,
                    method="GET",
                    path=path,
                )
            yield from (item for item in items if isinstance(item, dict))
            cursor = page.get("cursor")
            if not items or not cursor:
                return
            if str(cursor) in seen:
                logger.warning("Iron repeated the cursor %s on %s; stopping there.", cursor, path)
                return
            seen.add(str(cursor))
            params = {**params, "cursor": str(cursor)}

    def list_identifications(self, customer_iron_id: uuid.UUID | str) -> list[IronObject]:
        """All of a customer's identifications as a list (see :meth:`iter_identifications`)."""
        return list(self.iter_identifications(customer_iron_id))

    def get_identification(self, identification_iron_id: uuid.UUID | str) -> IronObject:
        """``GET /api/identifications/{id}``."""
        return self._object("GET", f"/api/identifications/{_seg(identification_iron_id)}")

    def sandbox_decide(
        self,
        identification_iron_id: uuid.UUID | str,
        *,
        approved: bool,
        idempotency_key: uuid.UUID | str,
    ) -> IronObject:
        """``POST /api/sandbox/identification/{id}`` with ``{"approved": bool}`` (sandbox only).

        The caller (``services``) checks that sandbox actions are allowed before calling.
        """
        return self._object(
            "POST",
            f"/api/sandbox/identification/{_seg(identification_iron_id)}",
            json_body={"approved": bool(approved)},
            idempotency_key=idempotency_key,
        )

    # --- transport --------------------------------------------------------------------

    def _object(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        idempotency_key: uuid.UUID | str | None = None,
    ) -> IronObject:
        data = self.request(
            method, path, params=params, json_body=json_body, idempotency_key=idempotency_key
        )
        if not isinstance(data, dict):
            raise IronAPIError(
                f"Iron answered with {type(data).__name__}, not a JSON object.",
                status=200,
                method=method,
                path=path,
            )
        return data

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        idempotency_key: uuid.UUID | str | None = None,
    ) -> Any:
        """Send one request to Iron and return the decoded JSON body.

        ``path`` starts with ``/api/``. A POST without ``idempotency_key`` is a programming
        error (Iron requires one) and raises ``ValueError`` before anything is sent.
        """
        method = method.upper()
        headers: dict[str, str] = {}
        data: bytes | None = None
        if method == "POST":
            if not idempotency_key:
                raise ValueError("Every POST to Iron needs an idempotency key.")
            headers["IDEMPOTENCY-KEY"] = str(idempotency_key)
        if json_body is not None:
            headers["Content-Type"] = JSON_CONTENT_TYPE
            data = json.dumps(json_body, separators=(",", ":")).encode()
        url = self.base_url + path
        # Errors are raised after the ``except`` blocks, so that requests' exception (whose
        # request carries the X-API-Key header) is not chained to ours as ``__context__``.
        failure: IronAPIError | None = None
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except (
            requests.Timeout,
            requests.ConnectionError,
            requests.exceptions.RetryError,
            # The connection dropped while the body was read: as transient as a timeout.
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            failure = IronTransientError(
                f"{_describe(exc)} talking to Iron", method=method, path=path
            )
        except requests.RequestException as exc:
            failure = IronAPIError(f"{_describe(exc)} talking to Iron", method=method, path=path)
        if failure is not None:
            logger.warning("Iron %s %s failed: %s", method, path, failure.message)
            raise failure
        logger.debug("Iron %s %s -> %s", method, path, response.status_code)
        return self._decode(response, method, path)

    def _decode(self, response: requests.Response, method: str, path: str) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            if status == 204 or not response.content:
                return {}
            try:
                return response.json()
            except ValueError:
                raise IronAPIError(
                    "Iron answered with a body that is not JSON.",
                    status=status,
                    method=method,
                    path=path,
                ) from None
        if 300 <= status < 400:
            raise IronAPIError(
                f"Iron answered with a redirect ({status}); redirects are never followed.",
                status=status,
                method=method,
                path=path,
            )
        message, code, request_id, body = parse_error_body(response)
        # Never let the key or the proxy's credentials through, even if an error page (Iron's
        # or the proxy's) echoed the request headers.
        for secret in self._secrets:
            message = message.replace(secret, "********")
            if isinstance(body, str):
                body = body.replace(secret, "********")
            elif body is not None and secret in json.dumps(body, default=str):
                body = None
        request_id = request_id or response.headers.get("x-request-id")
        kwargs: dict[str, Any] = {
            "status": status,
            "code": code,
            "request_id": request_id,
            "method": method,
            "path": path,
            "body": body,
        }
        if status == 429 or status >= 500:
            raise IronTransientError(
                message,
                retry_after=_parse_retry_after(response.headers.get("Retry-After")),
                **kwargs,
            )
        raise IronAPIError(message, **kwargs)


def parse_error_body(response: requests.Response) -> tuple[str, str | None, str | None, Any]:
    """Read any of Iron's error shapes into ``(message, code, request_id, body)``.

    Shapes seen in Iron's documents: plain text (``authorization error``), a JSON string,
    ``{"error": {"code", "message", "request_id"}}``, and ``{"message", "trace_id"}``.
    """
    text = response.text.strip() if response.content else ""
    reason = response.reason or "error"
    if not text:
        return (reason, None, None, None)
    try:
        body: Any = json.loads(text)
    except ValueError:
        return (text[:500], None, None, text[:2000])
    if isinstance(body, str):
        return (body[:500] or reason, None, None, body)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return (
                str(error.get("message") or reason)[:500],
                _str_or_none(error.get("code")),
                _str_or_none(error.get("request_id") or body.get("request_id")),
                body,
            )
        if isinstance(error, str) and "message" not in body:
            code = _str_or_none(body.get("code"))
            return (error[:500], code, _str_or_none(body.get("request_id")), body)
        message = body.get("message") or body.get("detail") or reason
        return (
            str(message)[:500],
            _str_or_none(body.get("code")),
            _str_or_none(body.get("trace_id") or body.get("request_id")),
            body,
        )
    return (text[:500], None, None, body)


def _describe(exc: Exception) -> str:
    """Exception class names only: requests' messages carry URLs and connection details."""
    name = type(exc).__name__
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    return f"{name} ({type(reason).__name__})" if isinstance(reason, Exception) else name


def _check_base_url(base_url: str) -> None:
    """Refuse to send the key over plain http to anything but a loopback address."""
    problem = base_url_problem(base_url)
    if problem is Problem.BASE_URL_PLAIN_HTTP:
        raise IronConfigurationError(
            f"IRON_KYC_BASE_URL uses plain http to {url_host(base_url)}; only https "
            "(or a loopback fake) may carry the API key."
        )
    if problem:
        raise IronConfigurationError(f"IRON_KYC_BASE_URL {problem}.")


def _proxy_credentials(proxy: str) -> set[str]:
    """The credentials in a proxy URL, in each form a response could echo them in.

    The user name alone is not among them (it is not secret, and a short one would blank out
    words of every message); with the password, or as the whole user part, it is.
    """
    parts = urlsplit(proxy)
    if parts.username is None:
        return set()
    user, password = unquote(parts.username), unquote(parts.password or "")
    # requests sends them as "Proxy-Authorization: Basic <base64 of user:password>".
    token = base64.b64encode(f"{user}:{password}".encode("latin-1")).decode()
    found = {parts.netloc.rpartition("@")[0], f"{user}:{password}", token}
    found.update(p for p in (parts.password, password) if p)
    return found


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _seg(value: uuid.UUID | str) -> str:
    """One URL path segment, safely quoted (an id can never add a path or a query)."""
    return quote(str(value), safe="")
