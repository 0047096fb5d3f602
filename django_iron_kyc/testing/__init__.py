"""Test kit for projects that use django-iron-kyc.

- :class:`FakeIron`: a fake Iron HTTP server (see :mod:`django_iron_kyc.testing.fake`);
- :func:`sign_webhook` and :func:`build_event`: signed webhook deliveries as Iron sends them;
- :class:`WebhookSender`: posts them to the app through Django's test client;
- :class:`SignalRecorder`: records the signals the app sends (a context manager);
- ``django_iron_kyc.testing.factories``: factory-boy factories (needs ``factory-boy``);
- ``django_iron_kyc.testing.mirror``: ``mirror_customer`` and ``mirror_identification``,
  rows that exist both at a fake Iron and locally (needs ``factory-boy``);
- the pytest plugin ``iron_kyc`` (fixtures ``fake_iron``, ``send_iron_webhook``,
  ``deliver_fake_webhooks``, ``iron_signals``), registered through the ``pytest11`` entry
  point.

Importing this package does not need Django settings or factory-boy (``factories`` and
``mirror`` load models, so they are imported on their own).
"""

from __future__ import annotations

from .events import build_event, encode_event, sign_webhook
from .fake import Delivery, FakeIron, FakeOptions, Fault, HTTPDeliveryResult, RecordedRequest
from .signals import SignalRecorder
from .webhook_sender import WebhookSender

__all__ = [
    "Delivery",
    "FakeIron",
    "FakeOptions",
    "Fault",
    "HTTPDeliveryResult",
    "RecordedRequest",
    "SignalRecorder",
    "WebhookSender",
    "build_event",
    "encode_event",
    "sign_webhook",
]
