"""How often one user may ask to start a verification: ``IRON_KYC_VERIFICATION_THROTTLE_RATE``."""

from __future__ import annotations

from rest_framework.throttling import UserRateThrottle

from ..conf import iron_settings

__all__ = ["VerificationStartThrottle"]


class VerificationStartThrottle(UserRateThrottle):
    """Per user, in a DRF throttle scope of its own; the rate is read from the setting.

    The JSON ``POST`` and the page's button count against the same budget. A rate of
    ``None`` lets every request through.
    """

    scope = "iron_kyc_verification_start"

    def get_rate(self) -> str | None:
        return iron_settings.VERIFICATION_THROTTLE_RATE
