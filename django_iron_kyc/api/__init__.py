"""The end-user JSON API (Django REST framework): the signed-in user's own verification.

``iron_kyc:verification`` is :class:`~django_iron_kyc.api.views.VerificationView`; its bodies
are described in :mod:`~django_iron_kyc.api.serializers`.
"""

from .serializers import VerificationStatusSerializer
from .throttling import VerificationStartThrottle
from .views import VerificationView

__all__ = ["VerificationStartThrottle", "VerificationStatusSerializer", "VerificationView"]
