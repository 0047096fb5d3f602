"""Signals sent by django-iron-kyc.

Every signal is sent **after the transaction that made the change commits** (never for a
change that was rolled back) and **once per actual change**: a repeated or stale update from
Iron sends nothing. The status signals' ``source`` says where the change came from:
``"webhook"``, ``"poll"``, ``"create"``, ``"sandbox"`` or ``"refresh"``.

Connect receivers as usual::

    from django.dispatch import receiver
    from django_iron_kyc.signals import identification_approved

    @receiver(identification_approved)
    def on_approved(sender, identification, customer, **kwargs):
        ...
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = [
    "customer_forgotten",
    "customer_status_changed",
    "identification_approved",
    "identification_declined",
    "identification_expired",
    "identification_status_changed",
]

# Sent with sender=Identification whenever an identification's status changes (including
# the first status Iron gives it, and changes of superseded identifications).
# kwargs: identification, previous_status ("" if none), status, source.
identification_status_changed = Signal()

# Sent with sender=Identification each time an identification enters Approved, unless it
# has been superseded. kwargs: identification, customer, previous_status, source.
identification_approved = Signal()

# Sent with sender=Identification each time an identification enters Declined (Iron's
# "Rejected" counts as Declined), unless it has been superseded.
# kwargs: identification, customer, previous_status, source.
identification_declined = Signal()

# Sent with sender=Identification each time an identification enters Expired, unless it
# has been superseded. kwargs: identification, customer, previous_status, source.
identification_expired = Signal()

# Sent with sender=Customer whenever the customer's status at Iron changes.
# kwargs: customer, previous_status ("" if none), status, source.
customer_status_changed = Signal()

# Sent with sender=Customer once services.forget_customer() has deleted a customer (after its
# transaction commits), for the host project to forget what it keeps about the person.
# kwargs: iron_id (None if the customer never reached Iron), user_id (None if it had no user).
customer_forgotten = Signal()
