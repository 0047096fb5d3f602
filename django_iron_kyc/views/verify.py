"""The end-user page ``iron_kyc:verify``: the signed-in user's verification, for browsers.

``GET`` shows where it stands in words, with a "Verify my identity" button when one can be
started, a "Continue" link to Iron's hosted page while in progress, and a page that
refreshes itself (the ``Refresh`` header: no JavaScript) while starting or in review.
``POST`` starts one and sends the browser (303) to Iron's hosted page, or, when its URL is
not known within ``IRON_KYC_VERIFICATION_REDIRECT_WAIT``, back here. Nothing changes on
``GET``, and only ``request.user``'s own verification is ever shown.
"""

from __future__ import annotations

import time

from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.template.response import TemplateResponse
from django.utils.translation import gettext
from django.views import View

from ..api.mixins import NonAtomicRequestsMixin
from ..api.throttling import VerificationStartThrottle
from ..conf import iron_settings
from ..exceptions import IronTransientError, VerificationRequestError
from ..services.verification import (
    Phase,
    VerificationStatus,
    retry_after_seconds,
    start_verification,
    verification_status,
)

__all__ = ["VerifyView", "base_template"]

# How often the page refreshes itself: soon while Iron prepares the hosted page, slowly
# while a review (hours, in production) goes on.
REFRESH_SECONDS = {Phase.STARTING: 3, Phase.IN_REVIEW: 30}
_POLL_INTERVAL = 0.25  # seconds between two looks at the hosted URL during the wait


def base_template() -> str:
    """The template ``iron_kyc/verify.html`` extends: ``IRON_KYC_VERIFICATION_BASE_TEMPLATE``,
    else the project's ``base.html`` if it has one, else ``iron_kyc/base.html``."""
    name = iron_settings.VERIFICATION_BASE_TEMPLATE
    if name:
        return name
    try:
        get_template("base.html")
    except TemplateDoesNotExist:
        return "iron_kyc/base.html"
    return "base.html"


class VerifyView(LoginRequiredMixin, NonAtomicRequestsMixin, View):
    """The page; login required (the project's ``LOGIN_URL``)."""

    template_name = "iron_kyc/verify.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.render(request, verification_status(request.user))

    def post(self, request: HttpRequest) -> HttpResponse:
        throttle = VerificationStartThrottle()
        if not throttle.allow_request(request, self):  # type: ignore[arg-type]
            wait = max(1, round(throttle.wait() or 1))
            response = self.render(
                request,
                verification_status(request.user),
                error=gettext("Too many attempts. Please try again in %(seconds)s seconds.")
                % {"seconds": wait},
                http_status=429,
            )
            response["Retry-After"] = str(wait)
            return response
        try:
            result = start_verification(request.user)
        except VerificationRequestError as exc:
            return self.render(
                request, verification_status(request.user), error=str(exc), http_status=400
            )
        except IronTransientError as exc:
            wait = retry_after_seconds(exc)
            response = self.render(
                request,
                verification_status(request.user),
                error=gettext(
                    "Identity verification is unavailable right now. "
                    "Please try again in %(seconds)s seconds."
                )
                % {"seconds": wait},
                http_status=503,
            )
            response["Retry-After"] = str(wait)
            return response
        status = self.wait_for_hosted_url(request, result.status)
        response = HttpResponseRedirect(status.hosted_url or request.path)
        response.status_code = 303
        return response

    def wait_for_hosted_url(
        self, request: HttpRequest, status: VerificationStatus
    ) -> VerificationStatus:
        """Look again until Iron's hosted URL is known, for up to the setting's wait."""
        deadline = time.monotonic() + iron_settings.VERIFICATION_REDIRECT_WAIT
        while status.phase == Phase.STARTING and time.monotonic() < deadline:
            time.sleep(min(_POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
            status = verification_status(request.user)
        return status

    def render(
        self,
        request: HttpRequest,
        status: VerificationStatus,
        *,
        error: str = "",
        http_status: int = 200,
    ) -> HttpResponse:
        refresh = REFRESH_SECONDS.get(status.phase) if not error else None
        response = TemplateResponse(
            request,
            self.template_name,
            {
                "base_template": base_template(),
                "status": status,
                "phase": status.phase.value,
                "refresh_seconds": refresh,
                "error": error,
            },
            status=http_status,
        )
        if refresh:
            response["Refresh"] = str(refresh)
        response["Cache-Control"] = "private, no-cache"
        return response
