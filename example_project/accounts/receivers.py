"""Receivers of django-iron-kyc's signals: mark the user verified or not, and log it.

The signals are sent once per decision, after the transaction that stored it commits, from
wherever the decision came from (``source``: ``"webhook"``, ``"poll"``, ``"sandbox"``...), so
this is the only code a host project needs to react to Iron.
"""

import logging

from django.dispatch import receiver
from django.utils import timezone

from django_iron_kyc.models import Customer, Identification
from django_iron_kyc.signals import (
    customer_status_changed,
    identification_approved,
    identification_declined,
    identification_expired,
    identification_status_changed,
)

from .models import User

logger = logging.getLogger(__name__)


def _decide(customer: Customer, identification: Identification, status: str, source: str) -> None:
    if customer.user_id is None:
        logger.info(
            "Identification %s of %s: %s (no user).", identification.iron_id, customer, status
        )
        return
    # update(), not save(): the receiver may run while other code holds a User instance.
    User.objects.filter(pk=customer.user_id).update(
        kyc_status=status, kyc_decided_at=timezone.now()
    )
    logger.info(
        "User %s is now %s (identification %s, via %s).",
        customer.email or customer.user_id,
        status,
        identification.iron_id,
        source,
    )


@receiver(identification_approved)
def mark_verified(sender, identification, customer, source, **kwargs):
    _decide(customer, identification, User.KycStatus.VERIFIED, source)


@receiver(identification_declined)
def mark_declined(sender, identification, customer, source, **kwargs):
    _decide(customer, identification, User.KycStatus.DECLINED, source)


@receiver(identification_expired)
def mark_expired(sender, identification, customer, source, **kwargs):
    _decide(customer, identification, User.KycStatus.EXPIRED, source)


@receiver(identification_status_changed)
def unmark_on_step_up(sender, identification, previous_status, status, source, **kwargs):
    """Iron's step-up can send an Approved identification back to Pending: not verified now."""
    if previous_status != Identification.Status.APPROVED or identification.is_terminal:
        return
    if identification.is_superseded:
        return
    _decide(identification.customer, identification, User.KycStatus.UNVERIFIED, source)


@receiver(customer_status_changed)
def log_customer_status(sender, customer, previous_status, status, source, **kwargs):
    logger.info(
        "Customer %s at Iron: %s -> %s (via %s).",
        customer.email or customer.iron_id,
        previous_status or "(new)",
        status,
        source,
    )
