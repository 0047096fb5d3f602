"""Personal data about one customer: export it (access), forget it (erasure).

:func:`export_customer` answers a request for access, :func:`forget_customer` a request for
erasure (after archiving the customer at Iron, if asked, which cannot be undone), and
:func:`customer_data_counts` says what forgetting would delete, for a confirmation page. What
is kept and for how long otherwise is :mod:`.retention`'s job.
"""

from __future__ import annotations

import logging
import uuid
from datetime import date, datetime
from typing import Any

from django.apps import apps
from django.db import models, router, transaction
from django.db.models import Q, QuerySet
from django.db.models.deletion import Collector
from django.utils import timezone

from .. import signals
from ..exceptions import IronAPIError
from ..models import Customer, Identification, WebhookDelivery
from .iron import get_client
from .signalling import send

__all__ = [
    "EXPORT_FORMAT",
    "customer_data_counts",
    "deliveries_naming",
    "export_customer",
    "forget_customer",
]

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "django-iron-kyc customer export 1"
"""The ``format`` of :func:`export_customer`'s answer (its number changes with its shape)."""


def deliveries_naming(customer: Customer) -> QuerySet[WebhookDelivery]:
    """The stored webhook deliveries about ``customer`` or one of its identifications.

    A delivery acted on names them in its columns; one not acted on yet (or not Iron's
    shape) is found by their ids in its raw body. No index serves this: it reads the whole
    table, which retention keeps short, for the rare export or erasure.
    """
    return _naming([customer.iron_id, *customer.identifications.values_list("iron_id", flat=True)])


def _naming(iron_ids: list[uuid.UUID | None]) -> QuerySet[WebhookDelivery]:
    ids = [iron_id for iron_id in iron_ids if iron_id is not None]
    if not ids:
        return WebhookDelivery.objects.none()
    named = Q(customer_iron_id__in=ids) | Q(object_iron_id__in=ids)
    for iron_id in ids:
        named |= Q(body__contains=str(iron_id))
    return WebhookDelivery.objects.filter(named)


def customer_data_counts(customer: Customer | int) -> dict[str, int]:
    """What :func:`forget_customer` would delete (or rewrite, for the admin's history), by kind."""
    row = _customer(customer)
    history = _admin_history(row)
    return {
        "customers": 1,
        "identifications": row.identifications.count(),
        "webhook_deliveries": deliveries_naming(row).count(),
        "admin_log_entries": 0 if history is None else history.count(),
    }


def export_customer(customer: Customer | int) -> dict[str, Any]:
    """Everything this app holds about one customer, as JSON-serialisable data.

    ``customer``: every field of the row (``user_id`` is your user's primary key);
    ``identifications``: every field of each, oldest first; ``webhook_deliveries``: each
    stored delivery that names the customer or one of its identifications, with its raw
    body (:func:`deliveries_naming`); ``admin_history``: the admin's log entries about the
    customer and its identifications (when, what, the message; not which staff member).
    Nothing about another customer. Plus ``format`` (:data:`EXPORT_FORMAT`) and
    ``exported_at``.
    """
    row = _customer(customer)
    identifications = list(row.identifications.order_by("created_at", "pk"))
    deliveries = deliveries_naming(row).order_by("received_at", "pk")
    history = _admin_history(row, [i.pk for i in identifications])
    return {
        "format": EXPORT_FORMAT,
        "exported_at": timezone.now().isoformat(),
        "customer": _fields(row),
        "identifications": [_fields(i) for i in identifications],
        "webhook_deliveries": [_fields(d) for d in deliveries.iterator()],
        "admin_history": []
        if history is None
        else [
            {
                "action_time": entry.action_time.isoformat(),
                "object": entry.object_repr,
                "action": entry.get_action_flag_display(),
                "message": entry.get_change_message(),
            }
            for entry in history.order_by("action_time", "pk")
        ],
    }


def forget_customer(customer: Customer | int, *, archive_at_iron: bool = False) -> dict[str, int]:
    """Delete everything this app holds about one customer; return the counts by kind.

    One transaction deletes the stored webhook deliveries that name it
    (:func:`deliveries_naming`), its identifications and the customer, and rewrites the
    admin's history entries about it without its name (what was done, and when, stays).
    The counts: ``customers``, ``identifications``, ``webhook_deliveries``,
    ``admin_log_entries``, plus the label of any of your models deleted with it (a foreign
    key to ``Customer`` with ``on_delete=CASCADE``). After the commit,
    ``signals.customer_forgotten`` (sender ``Customer``; ``iron_id``, ``user_id``) lets your
    project forget its own rows; the user account is yours and left alone. A webhook that
    arrives for it later is stored with outcome ``unknown_object`` and deleted by retention;
    nothing is re-created.

    ``archive_at_iron`` first archives the customer and all its identifications at Iron
    (``PUT /api/customers/{id}/archive``), which cannot be undone. If Iron refuses, its
    ``IronAPIError`` is raised (``IronTransientError`` when Iron is out of reach) and nothing
    is deleted here. A customer not at Iron yet has nothing to archive there. A model of
    yours that protects the customer (``on_delete=PROTECT`` or ``RESTRICT``) makes it raise
    Django's ``ProtectedError`` or ``RestrictedError``, before Iron is asked.
    """
    row = _customer(customer)
    if archive_at_iron and row.iron_id is not None:
        # What would keep the customer from being deleted here refuses before Iron archives.
        Collector(using=router.db_for_write(Customer)).collect([row])
        _archive(row.iron_id)
    with transaction.atomic():
        row = Customer.objects.select_for_update().get(pk=row.pk)
        pk, iron_id, user_id = row.pk, row.iron_id, row.user_id
        ids = [iron_id, *row.identifications.values_list("iron_id", flat=True)]
        history = _admin_history(row)
        scrubbed = 0 if history is None else history.update(object_repr=f"forgotten customer #{pk}")
        # Deleting the identifications waits for whoever is applying a webhook to one; the
        # deliveries go after, theirs included. One still being acted on (it waits for the
        # rows deleted here) is skipped, not waited for: it then finds nothing to act on and
        # is kept as unknown_object, for retention, like any webhook that comes later.
        _, deleted = row.delete()
        doomed = _naming(ids).select_for_update(skip_locked=True).values_list("pk", flat=True)
        counts = {
            "customers": deleted.pop("iron_kyc.Customer", 0),
            "identifications": deleted.pop("iron_kyc.Identification", 0),
            "webhook_deliveries": WebhookDelivery.objects.filter(pk__in=list(doomed)).delete()[0],
            "admin_log_entries": scrubbed,
            **deleted,  # the host project's rows deleted with the customer, by label
        }
        transaction.on_commit(
            lambda: send(signals.customer_forgotten, Customer, iron_id=iron_id, user_id=user_id)
        )
    logger.info(
        "Forgot customer #%s (Iron %s): %s.",
        pk,
        iron_id or "-",
        ", ".join(f"{count} {kind}" for kind, count in counts.items()),
    )
    return counts


def _customer(customer: Customer | int) -> Customer:
    return Customer.objects.get(pk=customer.pk if isinstance(customer, Customer) else customer)


def _archive(iron_id: uuid.UUID) -> None:
    """Archive customer ``iron_id`` at Iron, or raise Iron's refusal (nothing logged of it
    but where and how: Iron's message may repeat what was sent)."""
    with get_client() as client:
        try:
            client.archive_customer(iron_id)
        except IronAPIError as exc:
            logger.warning(
                "Iron did not archive customer %s (HTTP %s, request id %s); nothing forgotten.",
                iron_id,
                exc.status or "-, no response",
                exc.request_id or "-",
            )
            raise
    logger.info("Archived customer %s at Iron (irreversible).", iron_id)


def _admin_history(
    customer: Customer, identification_pks: list[int] | None = None
) -> QuerySet[Any] | None:
    """The admin's log entries about ``customer`` (and these identifications), or None
    without Django's admin."""
    if not apps.is_installed("django.contrib.admin"):
        return None
    log_entry = apps.get_model("admin", "LogEntry")
    content_types = apps.get_model("contenttypes", "ContentType").objects
    about = Q(content_type=content_types.get_for_model(Customer), object_id=str(customer.pk)) | Q(
        content_type=content_types.get_for_model(Identification),
        object_id__in=[str(pk) for pk in identification_pks or ()],
    )
    entries: QuerySet[Any] = log_entry.objects.filter(about)
    return entries


def _fields(row: models.Model) -> dict[str, Any]:
    """Every stored field of ``row`` as JSON types (a foreign key as its ``*_id``)."""
    return {
        field.attname: _jsonable(getattr(row, field.attname)) for field in row._meta.concrete_fields
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
