"""End-user pages (plain Django).

``iron_kyc:verify`` is :class:`~django_iron_kyc.views.verify.VerifyView`.
"""

from .verify import VerifyView

__all__ = ["VerifyView"]
