"""Iron's webhook endpoint, HTTP only: verify the raw body, refuse, hand over, answer.

The order is fixed and cannot be skipped: size cap, configuration, signature over the raw
body (before anything parses it), headers; then :func:`~.receive.receive_delivery` stores the
delivery and acts on it or schedules it, and the outcome becomes the answer.

What the status codes tell Iron (the README's "Status codes" section says more):

- 2xx: stored, do not resend; the body ``{"outcome": "..."}`` says what happened to it.
- 400: malformed headers, or a signed body that is not Iron's shape (stored ``invalid``);
  resending will not help.
- 401: the signature does not match, or ``webhook-timestamp`` is outside
  ``IRON_KYC_WEBHOOK_TOLERANCE``.
- 405: not a POST. 413: the body is larger than ``IRON_KYC_WEBHOOK_MAX_BODY_SIZE``.
- 500: processing failed inline (stored ``failed``; Iron's retry and the webhook sweep
  process it again), or storing failed in either mode (nothing was kept: Iron must resend).
- 503: no usable webhook secret (check ``iron_kyc.W001``); nothing is stored.

Refused deliveries are logged (reason, remote address, ``webhook-id``) and not stored. No
secret, signature or body is ever logged.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import TYPE_CHECKING, Any

from django.core.exceptions import RequestDataTooBig
from django.db import connections, transaction
from django.http import HttpRequest, HttpResponse
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import signing
from ..conf import WEBHOOK_DEFERRED, WEBHOOK_PROCESSING_MODES, iron_settings
from ..models import WebhookDelivery
from .receive import receive_delivery

if TYPE_CHECKING:
    from rest_framework.views import AsView, GenericView

__all__ = ["IronWebhookView", "JSONOnlyNegotiation"]

logger = logging.getLogger(__name__)

Outcome = WebhookDelivery.Outcome


class JSONOnlyNegotiation(BaseContentNegotiation):
    """Always answer JSON, whatever ``Accept`` says (never a 406 to Iron)."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return None

    def select_renderer(
        self,
        request: Request,
        renderers: Iterable[BaseRenderer],
        format_suffix: str | None = None,
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class _RefusedError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)


def _loggable(value: str | None) -> str:
    # Header values come from anyone: repr() escapes control characters, the cut keeps
    # log lines short.
    return "none" if value is None else repr(value[:80])


def _content_length(meta: Mapping[str, Any], limit: int) -> None:
    raw = meta.get("CONTENT_LENGTH")
    if raw is None or raw == "":
        return
    raw = str(raw).strip()
    if not (raw.isascii() and raw.isdigit()):
        raise _RefusedError(400, "Content-Length is not a number")
    if len(raw) > 18 or int(raw) > limit:
        raise _RefusedError(413, f"body is larger than {limit} bytes")


def _webhook_id(meta: Mapping[str, Any]) -> str | None:
    value = meta.get("HTTP_WEBHOOK_ID")
    if value is None:
        return None
    value = str(value).strip()
    if not _WEBHOOK_ID.fullmatch(value):
        raise _RefusedError(400, f"{signing.ID_HEADER} header is malformed")
    return value


# Printable ASCII without spaces, and no longer than the column.
_WEBHOOK_ID_LENGTH = WebhookDelivery._meta.get_field("webhook_id").max_length or 255
_WEBHOOK_ID = re.compile(f"[!-~]{{1,{_WEBHOOK_ID_LENGTH}}}")


def _secret_keys() -> list[bytes]:
    keys = []
    for position, secret in enumerate(iron_settings.WEBHOOK_SECRETS):
        try:
            keys.append(signing.secret_bytes(secret))
        except ValueError:
            # Check iron_kyc.E007 reports it too; the others still verify (rotation).
            logger.error("IRON_KYC_WEBHOOK_SECRET #%s is not valid 'whsec_' base64.", position)
    return keys


# ``{"outcome": "..."}`` as DRF's JSONRenderer writes it, rendered once per outcome: it
# answers nearly every delivery (benchmarks/webhook_ingestion.py).
_OUTCOME_ANSWERS = {
    outcome: json.dumps({"outcome": outcome}, separators=(",", ":")).encode()
    for outcome in Outcome.values
}


def _answer(outcome: str) -> HttpResponse:
    """The 200 answer to a stored delivery, pre-rendered."""
    return HttpResponse(_OUTCOME_ANSWERS[outcome], content_type="application/json")


class IronWebhookView(APIView):
    """Receives Iron's signed webhook deliveries (``POST`` only).

    Authentication, permission, throttle, parser, renderer, negotiation and versioning
    classes are set here, so a host project's ``REST_FRAMEWORK`` defaults (say
    ``IsAuthenticated`` and a strict anonymous throttle) cannot lock Iron out. DRF makes
    the view CSRF-exempt (the signature is the authentication); :meth:`as_view` also
    keeps ``ATOMIC_REQUESTS`` away from it, so a rollback can never undo a stored delivery
    or a recorded failure.
    """

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []
    parser_classes = []  # the body is read raw, never through request.data
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnlyNegotiation
    versioning_class = None
    http_method_names = ["post"]
    processing: str | None = None
    """``"inline"`` or ``"deferred"`` for this URL; ``None`` (default) follows
    ``IRON_KYC_WEBHOOK_PROCESSING``. Set it with ``as_view(processing="deferred")``."""

    @classmethod
    def as_view(cls, **initkwargs: Any) -> AsView[GenericView]:
        processing = initkwargs.get("processing")
        if processing is not None and processing not in WEBHOOK_PROCESSING_MODES:
            raise ValueError(f"processing must be 'inline', 'deferred' or None, not {processing!r}")
        view = super().as_view(**initkwargs)
        for alias in connections:
            view = transaction.non_atomic_requests(using=alias)(view)
        return view

    def perform_authentication(self, request: Request) -> None:
        """Nothing here: the signature is the authentication (checked in :meth:`post`).

        DRF's default resolves ``request.user`` up front; with no authentication classes
        that is always the anonymous user, so it is left to be resolved if ever asked for.
        """

    def post(self, request: Request) -> HttpResponse:
        # Django's HttpRequest (DRF's documented ``request._request``): the headers and the
        # raw body, without a proxy in between.
        http_request: HttpRequest = request._request
        meta = http_request.META
        webhook_id_header = meta.get("HTTP_WEBHOOK_ID")
        try:
            body, timestamp, webhook_id = self._verify(http_request)
        except _RefusedError as refused:
            log = logger.error if refused.status >= 500 else logger.warning
            log(
                "Refused an Iron webhook delivery with %s (%s) from %s, webhook-id %s.",
                refused.status,
                refused.reason,
                meta.get("REMOTE_ADDR") or "unknown address",
                _loggable(webhook_id_header),
            )
            headers = (
                {"WWW-Authenticate": signing.SIGNATURE_HEADER} if refused.status == 401 else None
            )
            return Response({"detail": refused.reason}, status=refused.status, headers=headers)

        signed_at = datetime.fromtimestamp(timestamp, tz=dt_timezone.utc)
        deferred = None if self.processing is None else self.processing == WEBHOOK_DEFERRED
        receipt = receive_delivery(
            body=body, webhook_id=webhook_id, signed_at=signed_at, deferred=deferred
        )
        outcome = receipt.outcome
        if outcome == Outcome.INVALID:
            return Response({"detail": receipt.row.error or "invalid body"}, status=400)
        if outcome == Outcome.FAILED:
            return Response({"detail": "processing failed; please retry"}, status=500)
        return _answer(outcome)

    def _verify(self, request: HttpRequest) -> tuple[bytes, int, str | None]:
        """Size, configuration, signature, headers: everything that refuses a delivery."""
        meta = request.META
        limit = iron_settings.WEBHOOK_MAX_BODY_SIZE
        _content_length(meta, limit)
        try:
            # The raw bytes, before anything could parse them.
            body: bytes = request.body
        except RequestDataTooBig:
            raise _RefusedError(413, f"body is larger than {limit} bytes") from None
        except OSError:
            raise _RefusedError(400, "the body could not be read") from None
        if len(body) > limit:
            raise _RefusedError(413, f"body is larger than {limit} bytes")

        keys = _secret_keys()
        if not keys:
            # Our configuration, not Iron's fault: 5xx so Iron retries until it is fixed.
            raise _RefusedError(503, "webhook receiver is not configured")

        try:
            timestamp = signing.verify(
                body=body,
                timestamp_header=meta.get("HTTP_WEBHOOK_TIMESTAMP"),
                signature_header=meta.get("HTTP_WEBHOOK_SIGNATURE"),
                secrets=keys,
                tolerance=iron_settings.WEBHOOK_TOLERANCE,
            )
        except signing.MalformedSignatureError as exc:
            raise _RefusedError(400, exc.reason) from None
        except signing.SignatureError as exc:
            raise _RefusedError(401, exc.reason) from None
        return body, timestamp, _webhook_id(meta)
