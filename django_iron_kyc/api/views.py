"""The end-user JSON endpoint ``iron_kyc:verification``: the signed-in user's verification.

``GET`` answers where it stands (with an ``ETag``: a poll that changed nothing is a 304);
``POST`` starts one. About ``request.user`` only: the URL takes no parameter. The host's
authentication classes apply (session, token, JWT...); an authenticated user is required
whatever the host's default permission classes, and the ``POST`` is throttled per user in a
scope of its own, whatever the host's default throttles.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, cast

from django.http import HttpResponseBase
from django.utils.cache import get_conditional_response, patch_vary_headers
from rest_framework import status as http
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import SAFE_METHODS, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from ..exceptions import IronTransientError, VerificationRequestError
from ..services.verification import (
    VerificationStatus,
    retry_after_seconds,
    start_verification,
    verification_status,
)
from .mixins import NonAtomicRequestsMixin
from .serializers import VerificationStatusSerializer
from .throttling import VerificationStartThrottle

__all__ = ["VerificationView", "status_etag"]


def status_etag(data: Any) -> str:
    """A weak ETag of a status body: equal bodies, equal tags."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return f'W/"{hashlib.sha256(canonical.encode()).hexdigest()[:32]}"'


class VerificationView(NonAtomicRequestsMixin, APIView):
    """``GET``: the user's :class:`~django_iron_kyc.services.verification.VerificationStatus`.
    ``POST`` (optional ``{"with_edd": true}``): start one; 201 when one was started, 200
    with the current one when not (one in flight already, or nothing to start), 400 for a
    request that cannot be met (no email, EDD not allowed), 503 with ``Retry-After`` when
    Iron cannot be reached."""

    permission_classes = [IsAuthenticated]
    throttle_classes = [VerificationStartThrottle]
    serializer_class = VerificationStatusSerializer

    def get_authenticators(self) -> list[BaseAuthentication]:
        # DRF binds APIView.authentication_classes to the setting when it is first imported;
        # read the host's DEFAULT_AUTHENTICATION_CLASSES when asked instead, so changing it
        # (override_settings in the host's tests too) reaches this view. A subclass that
        # sets authentication_classes keeps them.
        if self.authentication_classes is APIView.authentication_classes:
            classes = cast(
                "list[type[BaseAuthentication]]", api_settings.DEFAULT_AUTHENTICATION_CLASSES
            )
            return [auth() for auth in classes]
        return super().get_authenticators()

    def get_serializer(self, *args: Any, **kwargs: Any) -> VerificationStatusSerializer:
        """The endpoint's body both ways; DRF's schema and drf-spectacular read it here."""
        return self.serializer_class(*args, **kwargs)

    def get_throttles(self) -> list[BaseThrottle]:
        if self.request.method in SAFE_METHODS:
            return []  # reading is one cheap query: a page or app may poll it
        return super().get_throttles()

    def get(self, request: Request) -> HttpResponseBase:
        data = self.get_serializer(verification_status(request.user)).data
        etag = status_etag(data)
        not_modified = get_conditional_response(request._request, etag=etag)
        response = not_modified if not_modified is not None else Response(data)
        return self._uncached(response, etag)

    def post(self, request: Request) -> HttpResponseBase:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            result = start_verification(request.user, with_edd=body.validated_data["with_edd"])
        except VerificationRequestError as exc:
            return Response(
                {"detail": str(exc), "code": exc.code}, status=http.HTTP_400_BAD_REQUEST
            )
        except IronTransientError as exc:
            wait = retry_after_seconds(exc)
            return Response(
                {
                    "detail": f"Identity verification is unavailable right now; try again in "
                    f"{wait} seconds.",
                    "code": "iron_unavailable",
                },
                status=http.HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Retry-After": str(wait)},
            )
        return self._answer(result.status, http.HTTP_201_CREATED if result.started else 200)

    def _answer(self, status: VerificationStatus, code: int) -> HttpResponseBase:
        data = self.get_serializer(status).data
        return self._uncached(Response(data, status=code), status_etag(data))

    @staticmethod
    def _uncached(response: HttpResponseBase, etag: str) -> HttpResponseBase:
        """Private to the user, and revalidated on every use."""
        response["ETag"] = etag
        response["Cache-Control"] = "private, no-cache"
        patch_vary_headers(response, ["Accept", "Authorization", "Cookie"])
        return response
