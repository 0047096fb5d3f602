"""The body of the end-user JSON endpoint, described for DRF's schema and drf-spectacular.

One serializer both ways: every answer is a
:class:`~django_iron_kyc.services.verification.VerificationStatus` (read-only fields), and the
``POST`` that starts a verification may send ``with_edd`` (write-only), so a schema
generator documents the answers and the request body from it alone.
"""

from __future__ import annotations

from rest_framework import serializers

from ..services.verification import IdentificationSummary, Phase, Reason, VerificationStatus

__all__ = [
    "IdentificationSummarySerializer",
    "ReasonSerializer",
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
    """The signed-in user's verification: the body of every answer of the endpoint, and
    the optional body of its ``POST``."""

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
    with_edd = serializers.BooleanField(
        write_only=True,
        required=False,
        default=False,
        help_text="POST only: ask for enhanced due diligence (where the site allows it).",
    )
