"""Django admin for customers, identifications and webhook deliveries.

Every field that comes from Iron is read-only: state changes only through ``services``
(one call per action, reported with counts). Anything remote that cannot be undone asks
for confirmation first and is written to Django's admin log with the staff user.
Importing this package registers the ModelAdmins with the default admin site.
"""

from .customers import CustomerAdmin, IdentificationInline
from .deliveries import WebhookDeliveryAdmin
from .identifications import IdentificationAdmin, SupersededFilter

__all__ = [
    "CustomerAdmin",
    "IdentificationAdmin",
    "IdentificationInline",
    "SupersededFilter",
    "WebhookDeliveryAdmin",
]
