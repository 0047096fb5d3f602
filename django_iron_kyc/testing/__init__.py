"""Test kit for projects that use django-iron-kyc.

- :class:`FakeIron`: a fake Iron HTTP server (see :mod:`django_iron_kyc.testing.fake`);
- :func:`sign_webhook` and :func:`build_event`: signed webhook deliveries as Iron sends them;
- ``django_iron_kyc.testing.factories``: factory-boy factories (needs ``factory-boy``);
- the pytest plugin ``iron_kyc`` (fixtures ``fake_iron``, ``send_iron_webhook``,
  ``iron_signals``), registered through the ``pytest11`` entry point.

Importing this package does not need Django settings or factory-boy.
"""

from __future__ import annotations

from .events import build_event, encode_event, sign_webhook
from .fake import Delivery, FakeIron, Fault, HTTPDeliveryResult, RecordedRequest

__all__ = [
    "Delivery",
    "FakeIron",
    "Fault",
    "HTTPDeliveryResult",
    "RecordedRequest",
    "build_event",
    "encode_event",
    "sign_webhook",
]
