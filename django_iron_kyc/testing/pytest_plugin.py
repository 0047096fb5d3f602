"""pytest plugin registered through the ``pytest11`` entry point ``iron_kyc``.

Installing django-iron-kyc gives a host project's tests these fixtures:

- ``fake_iron``: a started :class:`~django_iron_kyc.testing.FakeIron`, stopped after the
  test. With pytest-django and configured settings, ``IRON_KYC_BASE_URL``,
  ``IRON_KYC_API_KEY`` and ``IRON_KYC_WEBHOOK_SECRET`` point at it for the test. Options
  go through a marker: ``@pytest.mark.fake_iron(conflict_on_pending=True)``.
- ``send_iron_webhook``: ``send_iron_webhook(event_or_delivery)`` signs an event dict with
  the configured secret (or takes a fake's delivery as it is) and POSTs it to
  ``reverse("iron_kyc:webhook")`` through Django's test client with CSRF checks on;
  returns the response. ``send_iron_webhook.send`` is a ``send`` for
  ``fake_iron.deliver_webhooks(send=...)``.
- ``deliver_fake_webhooks``: ``deliver_fake_webhooks()`` sends everything in
  ``fake_iron``'s outbox that way and returns the responses.
- ``iron_signals``: records every django-iron-kyc signal sent during the test.

Nothing here imports Django until a fixture runs, so the plugin is harmless in a project
without pytest-django or Django settings.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from .events import encode_event, sign_webhook
from .fake import Delivery, FakeIron


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fake_iron(**options): keyword arguments for the FakeIron of the fake_iron fixture",
    )


def _django_configured() -> bool:
    try:
        from django.conf import settings
    except ImportError:
        return False
    return bool(settings.configured)


@pytest.fixture
def fake_iron(request: pytest.FixtureRequest) -> Iterator[FakeIron]:
    """A running fake Iron; the ``IRON_KYC_*`` settings point at it during the test."""
    marker = request.node.get_closest_marker("fake_iron")
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    if "webhook_secret" not in options and _django_configured():
        from ..conf import iron_settings

        secrets = iron_settings.WEBHOOK_SECRETS
        if secrets:
            options["webhook_secret"] = secrets[0]
    fake = FakeIron(**options).start()
    try:
        if _django_configured():
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


class WebhookSender:
    """Posts signed webhook deliveries to the app through Django's test client.

    Call it with an event dict (e.g. from :func:`~django_iron_kyc.testing.build_event`),
    raw body bytes/str, or a :class:`~django_iron_kyc.testing.Delivery` from a fake's
    outbox (sent exactly as signed). Keyword arguments:

    - ``secret``: sign with this instead of the first ``IRON_KYC_WEBHOOK_SECRET``;
    - ``timestamp``, ``webhook_id``: for the signature headers (default now and a new id);
    - ``headers``: extra or replacing headers; a ``None`` value removes that header;
    - ``url``: post here instead of ``reverse("iron_kyc:webhook")``.
    """

    def __call__(
        self,
        event: Mapping[str, Any] | Delivery | bytes | str,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        webhook_id: str | None = None,
        headers: Mapping[str, str | None] | None = None,
        url: str | None = None,
    ) -> Any:
        if isinstance(event, Delivery):
            body = event.body
            signed = dict(event.headers)
        else:
            if isinstance(event, (bytes, str)):
                body = event.encode("utf-8") if isinstance(event, str) else event
            else:
                body = encode_event(event)
            signed = sign_webhook(body, secret or self._secret(), timestamp, webhook_id)
        for name, value in (headers or {}).items():
            for existing in [k for k in signed if k.lower() == name.lower()]:
                del signed[existing]
            if value is not None:
                signed[name] = value
        return self.send(signed, body, url=url)

    def send(self, headers: Mapping[str, str], body: bytes, *, url: str | None = None) -> Any:
        """POST ``body`` with ``headers`` as they are (a ``send`` for ``deliver_webhooks``)."""
        from django.test import Client
        from django.urls import reverse

        content_type = "application/json"
        extra: dict[str, str] = {}
        for name, value in headers.items():
            if name.lower() == "content-type":
                content_type = value
            else:
                extra[name] = value
        client = Client(enforce_csrf_checks=True)
        return client.post(
            url or reverse("iron_kyc:webhook"),
            data=body,
            content_type=content_type,
            headers=extra,
        )

    @staticmethod
    def _secret() -> str:
        from ..conf import iron_settings

        secrets = iron_settings.WEBHOOK_SECRETS
        if not secrets:
            raise RuntimeError("IRON_KYC_WEBHOOK_SECRET is not set; pass secret=...")
        return secrets[0]


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


class SignalRecorder:
    """Every django-iron-kyc signal sent while recording, as ``(signal_name, kwargs)``.

    ``kwargs`` holds what the receiver got, ``sender`` included. Helpers: :meth:`names`,
    :meth:`kwargs_of`, :meth:`clear`; the recorder is also a sequence of the pairs.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._connected: list[tuple[Any, str]] = []

    def connect(self) -> None:
        from django.dispatch import Signal

        from .. import signals

        for name, value in vars(signals).items():
            if isinstance(value, Signal):
                uid = f"django_iron_kyc.testing.SignalRecorder:{id(self)}:{name}"
                value.connect(self._receiver(name), weak=False, dispatch_uid=uid)
                self._connected.append((value, uid))

    def disconnect(self) -> None:
        for signal, uid in self._connected:
            signal.disconnect(dispatch_uid=uid)
        self._connected.clear()

    def _receiver(self, name: str) -> Any:
        def receive(signal: Any = None, **kwargs: Any) -> None:
            self.calls.append((name, kwargs))

        return receive

    def names(self) -> list[str]:
        """The names of the signals sent, in order."""
        return [name for name, _ in self.calls]

    def kwargs_of(self, name: str) -> list[dict[str, Any]]:
        """The kwargs of each sending of the signal ``name``."""
        return [kwargs for sent, kwargs in self.calls if sent == name]

    def clear(self) -> None:
        self.calls.clear()

    def __len__(self) -> int:
        return len(self.calls)

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        return iter(self.calls)

    def __getitem__(self, index: int) -> tuple[str, dict[str, Any]]:
        return self.calls[index]

    def __repr__(self) -> str:
        return f"<SignalRecorder {self.names()}>"


@pytest.fixture
def iron_signals() -> Iterator[SignalRecorder]:
    """Records every django-iron-kyc signal sent during the test."""
    recorder = SignalRecorder()
    recorder.connect()
    try:
        yield recorder
    finally:
        recorder.disconnect()
