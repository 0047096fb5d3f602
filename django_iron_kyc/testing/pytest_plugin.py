"""pytest plugin registered through the ``pytest11`` entry point ``iron_kyc``.

Installing django-iron-kyc gives a host project's tests these fixtures:

- ``fake_iron``: a started :class:`~django_iron_kyc.testing.FakeIron`, stopped after the
  test. With pytest-django and configured settings, ``IRON_KYC_BASE_URL``,
  ``IRON_KYC_API_KEY`` and ``IRON_KYC_WEBHOOK_SECRET`` point at it for the test. Options
  go through a marker: ``@pytest.mark.fake_iron(conflict_on_pending=True)``.
- ``send_iron_webhook``: a :class:`~django_iron_kyc.testing.WebhookSender`:
  ``send_iron_webhook(event_or_delivery)`` signs an event dict with the configured secret
  (or takes a fake's delivery as it is) and POSTs it to ``reverse("iron_kyc:webhook")``
  through Django's test client with CSRF checks on; returns the response.
  ``send_iron_webhook.send`` is a ``send`` for ``fake_iron.deliver_webhooks(send=...)``.
- ``deliver_fake_webhooks``: ``deliver_fake_webhooks()`` sends everything in
  ``fake_iron``'s outbox that way and returns the responses.
- ``iron_signals``: a :class:`~django_iron_kyc.testing.SignalRecorder` of every
  django-iron-kyc signal sent during the test.

Nothing here reads Django settings until a fixture runs, so the plugin is harmless in a
project without pytest-django or Django settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings

from ..conf import iron_settings
from .fake import FakeIron
from .signals import SignalRecorder
from .webhook_sender import WebhookSender

# The fixtures, and the two classes they give (also importable from here, as before).
__all__ = [
    "SignalRecorder",
    "WebhookSender",
    "deliver_fake_webhooks",
    "fake_iron",
    "iron_signals",
    "send_iron_webhook",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fake_iron(**options): keyword arguments for the FakeIron of the fake_iron fixture",
    )


@pytest.fixture
def fake_iron(request: pytest.FixtureRequest) -> Iterator[FakeIron]:
    """A running fake Iron; the ``IRON_KYC_*`` settings point at it during the test."""
    marker = request.node.get_closest_marker("fake_iron")
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    if "webhook_secret" not in options and django_settings.configured:
        secrets = iron_settings.WEBHOOK_SECRETS
        if secrets:
            options["webhook_secret"] = secrets[0]
    fake = FakeIron(**options).start()
    try:
        if django_settings.configured:
            try:
                settings = request.getfixturevalue("settings")
            except pytest.FixtureLookupError:  # no pytest-django: the caller sets them
                settings = None
            if settings is not None:
                for name, value in fake.django_settings().items():
                    setattr(settings, name, value)
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def send_iron_webhook() -> WebhookSender:
    """Sign and POST a webhook delivery to the app's webhook URL (see :class:`WebhookSender`)."""
    return WebhookSender()


@pytest.fixture
def deliver_fake_webhooks(fake_iron: FakeIron, send_iron_webhook: WebhookSender) -> Any:
    """``deliver_fake_webhooks()``: send the fake's outbox to the app; returns the responses."""

    def deliver() -> list[Any]:
        return fake_iron.deliver_webhooks(send=send_iron_webhook.send)

    return deliver


@pytest.fixture
def iron_signals() -> Iterator[SignalRecorder]:
    """Records every django-iron-kyc signal sent during the test."""
    with SignalRecorder() as recorder:
        yield recorder
