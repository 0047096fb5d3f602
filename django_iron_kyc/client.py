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

import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from . import __version__
from ._client_options import ClientOptions
from ._http_errors import Redactor, error_from_exception, error_from_response, parse_retry_after
from .exceptions import IronAPIError

if TYPE_CHECKING:
    from typing_extensions import Self
    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse

__all__ = ["ClientOptions", "IronClient", "IronObject"]

logger = logging.getLogger(__name__)

_USER_AGENT = f"django-iron-kyc/{__version__} python-requests/{requests.__version__}"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_JSON_CONTENT_TYPE = "application/json; charset=utf-8"

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
                seconds = parse_retry_after(header)
                if seconds is None or seconds > self.give_up_after:
                    # With raise_on_status=False urllib3 hands back this response unchanged.
                    reason = ResponseError("Retry-After too long")
                    raise MaxRetryError(_pool, url, reason)  # type: ignore[arg-type]
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def parse_retry_after(self, retry_after: str) -> float:
        # Same reading as ``increment`` (urllib3's own refuses fractions such as "1.5").
        return parse_retry_after(retry_after) or 0.0


class IronClient:
    """A client for Iron's customer and identification API.

    Settings are read when the client is made: ``IRON_KYC_API_KEY``, ``IRON_KYC_BASE_URL``,
    ``IRON_KYC_TIMEOUT``, ``IRON_KYC_API_VERSION``, ``IRON_KYC_SUB_PARTNER_ID``,
    ``IRON_KYC_MAX_RETRIES``, ``IRON_KYC_RETRY_BACKOFF``, ``IRON_KYC_RETRY_AFTER_MAX``,
    ``IRON_KYC_PROXY``, ``IRON_KYC_CA_BUNDLE``. Any of them can be given as keyword
    arguments instead (see :class:`ClientOptions`).

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
        self.options = ClientOptions.from_settings(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            api_version=api_version,
            sub_partner_id=sub_partner_id,
            max_retries=max_retries,
            backoff_factor=backoff_factor,
            retry_after_max=retry_after_max,
            proxy=proxy,
            ca_bundle=ca_bundle,
        )
        self.base_url = self.options.base_url
        self.timeout = self.options.timeout
        self.session = _new_session(self.options)
        self._redactor = Redactor(self.options.api_key, self.options.proxy)

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

    def archive_customer(self, customer_iron_id: uuid.UUID | str) -> IronObject:
        """``PUT /api/customers/{id}/archive``: archive the customer and all of its
        identifications at Iron. It cannot be undone; Iron answers 200 with the customer."""
        return self._object("PUT", f"/api/customers/{_seg(customer_iron_id)}/archive")

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

    def _object(self, method: str, path: str, **kwargs: Any) -> IronObject:
        data = self.request(method, path, **kwargs)
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
            headers["Content-Type"] = _JSON_CONTENT_TYPE
            data = json.dumps(json_body, separators=(",", ":")).encode()
        # The error is raised outside the ``except`` block, so that requests' exception (whose
        # request carries the X-API-Key header) is not chained to ours as ``__context__``.
        failure: IronAPIError | None = None
        try:
            response = self.session.request(
                method,
                self.base_url + path,
                params=params,
                data=data,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            failure = error_from_exception(exc, method=method, path=path)
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
            except (ValueError, RecursionError):
                raise IronAPIError(
                    "Iron answered with a body that is not JSON (or is nested too deep to read).",
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
        raise error_from_response(response, method=method, path=path, redactor=self._redactor)


def _new_session(options: ClientOptions) -> requests.Session:
    """A session that sends the key, retries as the options say, never reads the environment
    (proxies, ``.netrc``, CA bundles) and always verifies TLS."""
    retries, backoff = options.max_retries, options.backoff_factor
    retry = _IronRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        redirect=False,
        allowed_methods=frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"}),
        status_forcelist=_RETRY_STATUSES,
        backoff_factor=backoff,
        backoff_jitter=backoff / 2,
        backoff_max=30.0,
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
    )
    retry.give_up_after = options.retry_after_max
    session = requests.Session()
    session.trust_env = False
    if options.proxy:
        session.proxies = {"http": options.proxy, "https": options.proxy}
    if options.ca_bundle:
        session.verify = options.ca_bundle  # a path: never False
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update(
        {"X-API-Key": options.api_key, "User-Agent": _USER_AGENT, "Accept": _JSON_CONTENT_TYPE}
    )
    if options.api_version:
        session.headers["X-API-Version"] = options.api_version
    if options.sub_partner_id:
        session.headers["X-SUB-PARTNER-ID"] = options.sub_partner_id
    return session


def _seg(value: uuid.UUID | str) -> str:
    """One URL path segment, safely quoted (an id can never add a path or a query)."""
    return quote(str(value), safe="")
