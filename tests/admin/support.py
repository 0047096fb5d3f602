"""Helpers for the admin tests: objects at the fake Iron and here, admin URLs, clients."""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser
from typing import Any

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from django_iron_kyc.models import Customer, Identification, WebhookDelivery
from django_iron_kyc.services import RemoteIdentification, apply_identification_state
from django_iron_kyc.testing.events import build_event, encode_event
from django_iron_kyc.testing.factories import CustomerFactory

SANDBOX_PATH = r"^/api/sandbox/identification/"
CREATE_PATH = r"^/api/customers/[^/]+/identifications/v2$"


def customer_at_iron(fake: Any, **fields: Any) -> Customer:
    """A customer that exists at the fake Iron and here."""
    remote = fake.add_customer(**fields)
    return Customer.objects.create(
        iron_id=remote["id"],
        email=remote["email"],
        name=remote.get("name", ""),
        external_id=remote.get("external_id") or "",
        status=remote["status"],
    )


def identification_at_iron(
    fake: Any, customer: Customer | None = None, status: str = "Pending", **fields: Any
) -> Identification:
    """An identification that exists at the fake Iron and here, applied as a poll would."""
    customer = customer or customer_at_iron(fake)
    remote = fake.add_identification(str(customer.iron_id), status=status, **fields)
    identification = Identification.objects.create(customer=customer)
    apply_identification_state(
        identification, RemoteIdentification.from_api(remote), source="refresh"
    )
    identification.refresh_from_db()
    return identification


def local_customer(n: int, **fields: Any) -> Customer:
    """A customer known only here (the fake Iron has never heard of it)."""
    customer: Customer = CustomerFactory(email=f"c{n}@example.com", **fields)
    return customer


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def levels_of(response: Any) -> list[str]:
    return [m.level_tag for m in get_messages(response.wsgi_request)]


def staff_client(*codenames: str, username: str = "staff") -> Client:
    """A logged-in staff user (not superuser) holding exactly these iron_kyc permissions."""
    user = get_user_model().objects.create_user(
        username=username, email=f"{username}@example.com", password="pw", is_staff=True
    )
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="iron_kyc", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


def changelist(model: str) -> str:
    return reverse(f"admin:iron_kyc_{model}_changelist")


def change(model: str, pk: Any) -> str:
    return reverse(f"admin:iron_kyc_{model}_change", args=[pk])


def sandbox_url(decision: str, identification: Identification) -> str:
    return reverse(f"admin:iron_kyc_identification_sandbox_{decision}", args=[identification.pk])


def start_url(customer: Customer) -> str:
    return reverse("admin:iron_kyc_customer_start_identification", args=[customer.pk])


def post_action(client: Client, model: str, action: str, objs: list[Any], **extra: str) -> Any:
    data: dict[str, Any] = {
        "action": action,
        ACTION_CHECKBOX_NAME: [str(o.pk) for o in objs],
        **extra,
    }
    if "post" not in extra:
        data["index"] = "0"
    return client.post(changelist(model), data)


def action_names(response: Any) -> set[str]:
    return set(re.findall(r'<option value="([a-z_]+)"', response.content.decode()))


def admin_log(obj: Any) -> list[LogEntry]:
    return list(LogEntry.objects.filter(object_id=str(obj.pk)).order_by("pk"))


def delivery_for(identification: Identification, status: str, **fields: Any) -> WebhookDelivery:
    event = build_event(
        "identification_status", identification.customer.iron_id, identification.iron_id, status
    )
    return WebhookDelivery.objects.create(
        webhook_id=fields.pop("webhook_id", f"msg_{uuid.uuid4().hex}"),
        event_type="identification_status",
        customer_iron_id=identification.customer.iron_id,
        object_iron_id=identification.iron_id,
        object_status=status,
        body=encode_event(event).decode(),
        **fields,
    )


class _FieldText(HTMLParser):
    """The text shown for one admin field: list cells, inline cells, read-only values."""

    VOID = frozenset({"br", "img", "input", "hr", "meta", "link"})

    def __init__(self, field: str) -> None:
        super().__init__()
        self.css_class = f"field-{field}"
        self.texts: list[str] = []
        self._depth = 0  # inside a field element: its nesting depth
        self._label_depth = 0  # inside its <label>: skipped
        self._current: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            if tag == "br" and self._depth:
                self._current.append(" ")
            return
        if self._depth:
            self._depth += 1
            if tag == "label":
                self._label_depth = self._depth
        elif self.css_class in (dict(attrs).get("class") or "").split():
            self._depth = 1
            self._current = []

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID or not self._depth:
            return
        if self._depth == self._label_depth:
            self._label_depth = 0
        self._depth -= 1
        if not self._depth:
            self.texts.append(" ".join("".join(self._current).split()))

    def handle_data(self, data: str) -> None:
        if self._depth and not self._label_depth:
            self._current.append(data)


def field_texts(response: Any, field: str) -> list[str]:
    """What a page shows for ``field``, in order: each list cell, inline cell or value."""
    parser = _FieldText(field)
    parser.feed(response.content.decode())
    return parser.texts


def tools_of(response: Any) -> list[str]:
    """The labels of the buttons at the top of a change page, in order."""
    tools = re.search(r'<ul class="object-tools">(.*?)</ul>', response.content.decode(), re.S)
    if tools is None:
        return []
    labels = re.findall(r"<(?:a|button)\b[^>]*>([^<]+)</(?:a|button)>", tools.group(1))
    return [label.strip() for label in labels]


def refresh_url(model: str, obj: Any) -> str:
    return reverse(f"admin:iron_kyc_{model}_refresh", args=[obj.pk])
