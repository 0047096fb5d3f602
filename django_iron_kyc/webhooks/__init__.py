"""Iron's webhooks: the endpoint, receiving and storing deliveries, and the drain.

A delivery is verified (:mod:`.views`), stored before anything else (:mod:`.storage`) and
then acted on through ``services.deliveries``: in the request (inline, :mod:`.receive`) or
by the drain task right after the answer (deferred, :mod:`.drain`). Either way the webhook
sweep (:func:`retry_deliveries`, in the beat schedule) acts on what was stored but not acted
on, and retries failures.
"""

from ..services.deliveries import reprocess_delivery
from .drain import process_received_deliveries, retry_deliveries
from .views import IronWebhookView

__all__ = [
    "IronWebhookView",
    "process_received_deliveries",
    "reprocess_delivery",
    "retry_deliveries",
]
