"""Storing a webhook delivery: one INSERT, written by hand, behind :func:`store_delivery`.

Every delivery is stored before anything else happens to it, so this runs once per request,
and with deferred processing it is nearly all the request does. It sends only the values the
database would not fill in by itself (``db_default``, NULL), builds no model instance unless
one is asked for, and passes datetimes to PostgreSQL as text (psycopg's own datetime dumper
is set up again on every new cursor). ``benchmarks/webhook_ingestion.py`` measures it against
a one-INSERT view; ``benchmarks/RESULTS.md`` holds the figures. Nothing else in the app knows
about these tricks: databases other than PostgreSQL and SQLite go through the ORM.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connections, router, transaction

from ..models import WebhookDelivery

if TYPE_CHECKING:
    from django.db.models import Field

__all__ = ["StoredDelivery", "store_delivery"]

logger = logging.getLogger(__name__)

_PK = WebhookDelivery._meta.pk
_INSERT_FIELDS = {f.attname: f for f in WebhookDelivery._meta.concrete_fields if f is not _PK}
# What the database fills in by itself for a field the INSERT leaves out: its db_default,
# or NULL. A new delivery holds these values in all but three or four fields, so its
# INSERT sends those alone.
_FILLED_BY_DATABASE: dict[str, Any] = {
    name: f.db_default if f.has_db_default() else None
    for name, f in _INSERT_FIELDS.items()
    if f.has_db_default() or (f.null and not f.has_default())
}
# The others: the INSERT always sends them (received_at, body), their Python default if
# the caller gave none.
_SENT_ALWAYS = tuple(f for name, f in _INSERT_FIELDS.items() if name not in _FILLED_BY_DATABASE)
# The order of a row's values for Model.from_db().
_ROW_ORDER = tuple(f.attname for f in WebhookDelivery._meta.concrete_fields)
# By database vendor, ON CONFLICT or not, and columns.
_INSERT_SQL: dict[tuple[str, bool, tuple[str, ...]], str] = {}


@dataclass(slots=True)
class StoredDelivery:
    """A delivery in the database: where, its pk, and whether this call stored it.

    ``created`` is False for a repeat: its ``webhook-id`` was stored before (by this or
    another connection), and :attr:`row` is that first row.
    """

    alias: str
    pk: int
    created: bool
    _values: Mapping[str, Any] = field(repr=False)
    _row: WebhookDelivery | None = field(default=None, repr=False)

    @property
    def row(self) -> WebhookDelivery:
        """The stored row as a model instance; a new one is built as a queryset builds it
        (``from_db``), without reading it back."""
        if self._row is None:
            values = self._values
            self._row = WebhookDelivery.from_db(
                self.alias,
                _ROW_ORDER,
                [
                    self.pk
                    if name == _PK.attname
                    else values[name]
                    if name in values
                    else _FILLED_BY_DATABASE[name]
                    for name in _ROW_ORDER
                ],
            )
        return self._row


def store_delivery(values: dict[str, Any]) -> StoredDelivery:
    """Store a delivery with these field values (attribute name to Python value).

    A field not in ``values`` gets its default (``received_at`` and ``body`` are added to
    ``values``). A repeat is a ``webhook-id`` already stored, even by another connection at
    the same moment; it stores nothing and reads the stored row. Outside a transaction (the
    view is non-atomic) the statement is a plain ``INSERT ... RETURNING id``, committed at
    once, which a repeat fails on the unique ``webhook_id``; inside a caller's transaction,
    where a failed statement would break it, it is ``INSERT ... ON CONFLICT (webhook_id) DO
    NOTHING`` (costlier on every delivery on PostgreSQL, not only on a repeat). No
    ``pre_save``/``post_save`` signal is sent for this model.
    """
    for f in _SENT_ALWAYS:
        if f.attname not in values:
            values[f.attname] = f.get_default()
    alias = router.db_for_write(WebhookDelivery)
    connection = connections[alias]
    if connection.vendor not in ("postgresql", "sqlite") or not (
        connection.features.can_return_columns_from_insert
    ):
        return _store_with_orm(WebhookDelivery(**values), alias)
    sent = {
        name: value
        for name, value in values.items()
        if name not in _FILLED_BY_DATABASE or value != _FILLED_BY_DATABASE[name]
    }
    on_conflict = connection.in_atomic_block
    key = (connection.vendor, on_conflict, tuple(sent))
    sql = _INSERT_SQL.get(key)
    if sql is None:
        fields = [_INSERT_FIELDS[name] for name in sent]
        sql = _INSERT_SQL[key] = _insert_sql(connection.ops.quote_name, fields, on_conflict)
    # The values are already of their fields' Python types, so only the database's own
    # adaptation is left.
    params = [
        _INSERT_FIELDS[name].get_db_prep_value(value, connection, prepared=True)
        for name, value in sent.items()
    ]
    if connection.vendor == "postgresql":
        # ISO 8601 text with its offset: PostgreSQL reads it into the timestamptz column
        # as the same instant, and psycopg's datetime dumper is not set up.
        params = [p.isoformat() if isinstance(p, datetime) else p for p in params]
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            returned = cursor.fetchone()
    except IntegrityError as exc:
        if on_conflict:
            raise
        return _repeat(values, exc)
    if returned is None:
        return _repeat(values, None)
    return StoredDelivery(alias, returned[0], True, values)


def _insert_sql(
    quote: Callable[[str], str], fields: Sequence[Field[Any, Any]], on_conflict: bool
) -> str:
    """``INSERT ... [ON CONFLICT (webhook_id) DO NOTHING] RETURNING id`` for ``fields``."""
    meta = WebhookDelivery._meta

    def name(column: str | None) -> str:
        assert column is not None  # concrete fields always have a column
        return quote(column)

    columns = ", ".join(name(f.column) for f in fields)
    values = ", ".join(["%s"] * len(fields))
    table = quote(meta.db_table)
    webhook_id = name(meta.get_field("webhook_id").column)
    conflict = f"ON CONFLICT ({webhook_id}) DO NOTHING " if on_conflict else ""
    # Only the model's own table and column names, quoted; every value is a parameter.
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({values}) "  # noqa: S608
        f"{conflict}RETURNING {name(meta.pk.column)}"
    )


def _store_with_orm(row: WebhookDelivery, alias: str) -> StoredDelivery:
    try:
        # A savepoint inside a caller's transaction; one autocommitted INSERT outside.
        with transaction.atomic(using=alias):
            row.save(force_insert=True, using=alias)
    except IntegrityError as exc:
        return _repeat({"webhook_id": row.webhook_id, "body": row.body}, exc)
    return StoredDelivery(alias, row.pk, True, {}, row)


def _repeat(values: Mapping[str, Any], error: IntegrityError | None) -> StoredDelivery:
    """The row stored before this one (``values``) under its ``webhook-id``; ``error`` is
    the INSERT's.

    Without such a row, ``error`` was about something else and is raised again (or the
    row was deleted meanwhile, by pruning: an IntegrityError lets Iron try again).
    """
    webhook_id = values.get("webhook_id")
    existing = None
    if webhook_id is not None:
        existing = WebhookDelivery.objects.filter(webhook_id=webhook_id).first()
    if existing is None:
        if error is not None:
            raise error
        raise IntegrityError(f"webhook delivery {webhook_id!r} vanished while being stored")
    if existing.body != values.get("body"):
        logger.warning(
            "Iron webhook-id %r arrived again with a different body; the first one stands.",
            webhook_id,
        )
    assert existing._state.db is not None  # a row read from the database
    return StoredDelivery(existing._state.db, existing.pk, False, {}, existing)
