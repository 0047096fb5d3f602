"""Sending the app's signals: after commit, once per change, a failing receiver logged.

Only :mod:`~django_iron_kyc.services.state` decides *when* a signal is due; this module sends
it. ``send_robust``: one failing receiver in the host project must neither stop the others
nor turn an already committed change into an error (which would lose the event).
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

from .. import signals
from ..models import Customer, Identification
from .sources import Source

__all__ = [
    "TERMINAL_SIGNALS",
    "send",
    "send_customer_status_changed",
    "send_identification_signals",
]

logger = logging.getLogger(__name__)

TERMINAL_SIGNALS = {
    Identification.Status.APPROVED.value: signals.identification_approved,
    Identification.Status.DECLINED.value: signals.identification_declined,
    Identification.Status.EXPIRED.value: signals.identification_expired,
}


def send_identification_signals(
    identification: Identification, previous: str, status: str, source: Source
) -> None:
    """``identification_status_changed``, then the terminal signal on entry into a decision
    (not for a superseded identification: it no longer counts)."""
    send(
        signals.identification_status_changed,
        Identification,
        identification=identification,
        previous_status=previous,
        status=status,
        source=source.value,
    )
    terminal = TERMINAL_SIGNALS.get(status)
    if terminal is None:
        return
    if identification.superseded_at is not None:
        logger.info(
            "Identification %s reached %s after being superseded; no %s signal.",
            identification.iron_id,
            status,
            status,
        )
        return
    send(
        terminal,
        Identification,
        identification=identification,
        customer=identification.customer,
        previous_status=previous,
        source=source.value,
    )


def send_customer_status_changed(
    customer: Customer, previous: str, status: str, source: Source
) -> None:
    send(
        signals.customer_status_changed,
        Customer,
        customer=customer,
        previous_status=previous,
        status=status,
        source=source.value,
    )


def send(signal: Signal, sender: type, **kwargs: Any) -> None:
    """Send ``signal`` to every receiver; one that raises is logged and the others still run."""
    for receiver, result in signal.send_robust(sender=sender, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "Receiver %r of a django-iron-kyc signal raised %r.",
                receiver,
                result,
                exc_info=result,
            )
