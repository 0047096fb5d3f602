"""Django admin for customers, identifications and webhook deliveries.

Every field that comes from Iron is read-only for everyone, and nothing Iron owns is
deleted here: state changes only through ``services`` (one call per action, reported with
counts), creating a customer included. Anything remote that cannot be undone asks for
confirmation first and is written to Django's admin log with the staff user. Pages name
people and statuses, not UUIDs (:mod:`.display`). Importing this package registers the
ModelAdmins with the default admin site.
"""

from .customers import CustomerAdmin, CustomerStatusFilter, IdentificationInline
from .deliveries import WebhookDeliveryAdmin
from .filters import DeliveryAttentionFilter, IdentificationAttentionFilter, SupersededFilter
from .identifications import IdentificationAdmin, IdentificationStatusFilter

__all__ = [
    "CustomerAdmin",
    "CustomerStatusFilter",
    "DeliveryAttentionFilter",
    "IdentificationAdmin",
    "IdentificationAttentionFilter",
    "IdentificationInline",
    "IdentificationStatusFilter",
    "SupersededFilter",
    "WebhookDeliveryAdmin",
]
