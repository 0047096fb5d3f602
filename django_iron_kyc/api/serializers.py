"""The bodies of the end-user JSON endpoint, described for DRF's schema (and drf-spectacular).

Read-only descriptions of :class:`~django_iron_kyc.verification.VerificationStatus`, and the
optional body of the ``POST`` that starts a verification.
"""

from __future__ import annotations

from rest_framework import serializers

from ..verification import IdentificationSummary, Phase, Reason, VerificationStatus

__all__ = [
    "IdentificationSummarySerializer",
    "ReasonSerializer",
    "StartVerificationSerializer",
    "VerificationStatusSerializer",
]


class ReasonSerializer(serializers.Serializer[Reason]):
    """Why Iron said no (filled by the requirements issue; empty until then)."""

    code = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)


class IdentificationSummarySerializer(serializers.Serializer[IdentificationSummary]):
    """The current identification: Iron's id and status, as Iron spells them."""

    id = serializers.UUIDField(read_only=True, help_text="Iron's identification id.")
    status = serializers.CharField(
        read_only=True, help_text="Iron's status: Pending, Processed, PendingReview, ..."
    )
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class VerificationStatusSerializer(serializers.Serializer[VerificationStatus]):
    """The signed-in user's verification: the body of every answer of the endpoint."""

    phase = serializers.ChoiceField(choices=Phase.choices, read_only=True)
    can_start = serializers.BooleanField(
        read_only=True, help_text="Whether a POST would start a new identification now."
    )
    hosted_url = serializers.URLField(
        read_only=True,
        allow_null=True,
        help_text="Iron's hosted page to send the user to while in_progress; else null.",
    )
    identification = IdentificationSummarySerializer(read_only=True, allow_null=True)
    customer_status = serializers.CharField(
        read_only=True, allow_null=True, help_text="Iron's customer status, or null."
    )
    can_retry = serializers.BooleanField(
        read_only=True,
        allow_null=True,
        help_text="Whether a declined user may try again (null until requirements are known).",
    )
    reasons = ReasonSerializer(many=True, read_only=True)


class StartVerificationSerializer(serializers.Serializer[dict[str, bool]]):
    """The optional body of the ``POST``: ``{"with_edd": true}`` asks for enhanced due
    diligence, where ``IRON_KYC_VERIFICATION_ALLOW_EDD`` allows it."""

    with_edd = serializers.BooleanField(required=False, default=False)
