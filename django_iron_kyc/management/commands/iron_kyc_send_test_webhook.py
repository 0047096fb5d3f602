"""``manage.py iron_kyc_send_test_webhook``: sign an event like Iron and POST it to a URL.

For local development: it signs with the configured ``IRON_KYC_WEBHOOK_SECRET``, so it can
change real state on whatever server it reaches. Only loopback hosts are allowed unless
``--allow-remote`` is given.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import requests
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import NoReverseMatch, reverse

from ...conf import iron_settings
from ...payloads import EventType
from ...testing.events import MESSAGE_SHAPES, build_event, encode_event, sign_webhook
from ...validators import is_loopback_host

DEFAULT_STATUS = {EventType.IDENTIFICATION_STATUS: "Approved", EventType.CUSTOMER_STATUS: "Active"}


class Command(BaseCommand):
    help = (
        "Sign an identification_status or customer_status event with the configured webhook "
        "secret and POST it to a URL (default: this project's iron_kyc:webhook on "
        "http://127.0.0.1:8000). For local development."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", help="Where to POST (default: 127.0.0.1:8000 + the URL).")
        parser.add_argument(
            "--type",
            dest="event_type",
            choices=[event_type.value for event_type in EventType],
            default=EventType.IDENTIFICATION_STATUS.value,
        )
        parser.add_argument(
            "--customer-id", type=uuid.UUID, help="Iron's customer id (default: a random one)."
        )
        parser.add_argument(
            "--id",
            dest="object_id",
            type=uuid.UUID,
            help="The identification's Iron id (customer_status: the customer id; default: "
            "random for identifications, the customer id for customers).",
        )
        parser.add_argument(
            "--status", help="Default: Approved (identification) or Active (customer)."
        )
        parser.add_argument("--shape", choices=MESSAGE_SHAPES, default="tagged")
        parser.add_argument("--webhook-id", help="Default: a new UUID.")
        parser.add_argument(
            "--allow-remote", action="store_true", help="Allow a host that is not loopback."
        )
        parser.add_argument("--timeout", type=float, default=10.0, help="Seconds (default 10).")

    def handle(self, *args: Any, **options: Any) -> None:
        url = options["url"] or self._default_url()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CommandError(f"{url!r} is not an http(s) URL.")
        if not is_loopback_host(parts.hostname) and not options["allow_remote"]:
            raise CommandError(
                f"{parts.hostname} is not a loopback host; a signed event can change real "
                "state there. Pass --allow-remote if that is what you want."
            )
        secrets = iron_settings.WEBHOOK_SECRETS
        if not secrets:
            raise CommandError("IRON_KYC_WEBHOOK_SECRET is not set: nothing to sign with.")

        event_type = options["event_type"]
        customer_id = options["customer_id"] or uuid.uuid4()
        object_id = options["object_id"] or (
            customer_id if event_type == EventType.CUSTOMER_STATUS else uuid.uuid4()
        )
        status = options["status"] or DEFAULT_STATUS[event_type]
        event = build_event(event_type, customer_id, object_id, status, shape=options["shape"])
        body = encode_event(event)
        try:
            headers = sign_webhook(body, secrets[0], webhook_id=options["webhook_id"])
        except ValueError as exc:  # a 'whsec_' secret that is not base64
            raise CommandError(str(exc)) from None

        # Our own endpoint, not Iron: this is not client.py's business.
        try:
            response = requests.post(
                url,
                data=body,
                headers=headers,
                timeout=options["timeout"],
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise CommandError(f"POST {url} failed: {type(exc).__name__}") from None
        summary = (
            f"POST {url} {event_type} {object_id} {status} "
            f"(webhook-id {headers['webhook-id']}) -> {response.status_code} {response.text[:200]}"
        )
        if not 200 <= response.status_code < 300:
            raise CommandError(summary)
        self.stdout.write(summary)

    def _default_url(self) -> str:
        try:
            path = reverse("iron_kyc:webhook")
        except NoReverseMatch:
            raise CommandError(
                "iron_kyc:webhook is not in this project's URLs; pass --url."
            ) from None
        return f"http://127.0.0.1:8000{path}"
