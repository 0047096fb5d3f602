"""Post signed webhook deliveries to the app through Django's test client, as Iron would."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.test import Client
from django.urls import reverse

from ..conf import iron_settings
from .events import encode_event, sign_webhook
from .fake import Delivery

__all__ = ["WebhookSender"]


class WebhookSender:
    """Posts signed webhook deliveries to the app through Django's test client.

    Call it with an event dict (e.g. from :func:`~django_iron_kyc.testing.build_event`),
    raw body bytes/str, or a :class:`~django_iron_kyc.testing.Delivery` from a fake's
    outbox (sent exactly as signed). Keyword arguments:

    - ``secret``: sign with this instead of the first ``IRON_KYC_WEBHOOK_SECRET``;
    - ``timestamp``, ``webhook_id``: for the signature headers (default now and a new id);
    - ``headers``: extra or replacing headers; a ``None`` value removes that header;
    - ``url``: post here instead of ``reverse("iron_kyc:webhook")``.

    CSRF checks stay on, as they are for Iron. Returns the test client's response.
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
        secrets = iron_settings.WEBHOOK_SECRETS
        if not secrets:
            raise RuntimeError("IRON_KYC_WEBHOOK_SECRET is not set; pass secret=...")
        return secrets[0]
