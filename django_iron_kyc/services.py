"""The one place where Iron's client and our models meet.

Every change of state that comes from Iron (webhook, poll, create, sandbox call, refresh)
goes through :func:`apply_identification_state` or :func:`apply_customer_state`. They lock
the row, drop updates older than what is stored, store Iron's status as Iron spells it and
send each signal once per actual change, after the transaction commits.

The public operations built on them:

- :func:`create_customer`: ``POST /api/customers``, idempotent.
- :func:`start_identification`: record the intent (no HTTP) and enqueue its creation.
- :func:`submit_identification`: what the ``create_identification`` task runs.
- :func:`refresh_customer`: fetch a customer and all its identifications now.
- :func:`sandbox_approve` / :func:`sandbox_decline`: sandbox decisions.
- :func:`poll_due_identifications`: the periodic sweep (task ``poll_pending_identifications``).
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from functools import partial
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Case, DateTimeField, F, Q, Value, When
from django.utils import timezone

from . import signals
from .client import IronClient
from .conf import iron_settings
from .enqueue import CREATE_IDENTIFICATION, enqueue_on_commit
from .exceptions import (
    IdentificationInFlightError,
    IdentificationStateError,
    IronAPIError,
    IronTransientError,
    SandboxNotAllowedError,
)
from .models import Customer, Identification, IdentificationQuerySet, WebhookDelivery
from .payloads import (
    RemoteCustomer,
    RemoteIdentification,
    normalize_identification_status,
    parse_iron_datetime,  # noqa: F401 (re-exported)
)

logger = logging.getLogger(__name__)


class Source(str, enum.Enum):
    """Where a change of state came from (the ``source`` kwarg of the signals)."""

    WEBHOOK = "webhook"
    POLL = "poll"
    CREATE = "create"
    SANDBOX = "sandbox"
    REFRESH = "refresh"

    def __str__(self) -> str:
        return self.value


KNOWN_IDENTIFICATION_STATUSES = frozenset(Identification.Status.values)
KNOWN_CUSTOMER_STATUSES = frozenset(Customer.Status.values)


@dataclass
class ApplyResult:
    """What applying a remote state did."""

    instance: Any
    applied: bool  # False when the update was older than what is stored
    status_changed: bool
    previous_status: str


TERMINAL_SIGNALS = {
    Identification.Status.APPROVED.value: signals.identification_approved,
    Identification.Status.DECLINED.value: signals.identification_declined,
    Identification.Status.EXPIRED.value: signals.identification_expired,
}


def apply_identification_state(
    identification: Identification | int,
    remote: RemoteIdentification,
    *,
    source: Source | str,
    locked: bool = False,
) -> ApplyResult:
    """Apply Iron's state of one identification to our row. The only way status changes.

    Locks the row (``select_for_update``), ignores ``remote`` when its ``updated_at`` is
    older than the stored ``iron_updated_at`` (Iron may deliver late, twice or out of
    order), leaves a terminal status only for an update strictly newer than the stored one
    (Iron's step-up), stores the status as Iron spells it (``Rejected`` is stored as
    ``Declined``; unknown values are stored and logged, without signals), and on an actual
    change of status sends ``identification_status_changed`` and, on entry into
    Approved/Declined/Expired of an identification that is not superseded, the matching
    terminal signal. Signals go out after the transaction commits, so a rollback sends
    nothing.

    ``locked=True``: ``identification`` is a row the caller already locked in its open
    transaction, with its customer (:func:`locked_identifications`); it is used as is, without
    a second lock or a savepoint, and an error rolls back the caller's transaction.
    """
    source = Source(source)
    if locked:
        if not isinstance(identification, Identification):
            raise TypeError("locked=True needs the locked Identification row, not a pk")
        if not transaction.get_connection().in_atomic_block:
            raise transaction.TransactionManagementError(
                "locked=True needs the caller's transaction that holds the row lock"
            )
        return _apply_to_locked_identification(identification, remote, source)
    pk = identification.pk if isinstance(identification, Identification) else identification
    with transaction.atomic():
        row = locked_identifications().get(pk=pk)
        return _apply_to_locked_identification(row, remote, source)


def locked_identifications() -> IdentificationQuerySet:
    """Identifications locked for update (``of=self``) with their customer, for one transaction.

    How :func:`apply_identification_state` locks its row, and how a caller that passes
    ``locked=True`` must have locked it. The customer comes with the row: the terminal
    signal after commit needs it, and a query then could fail (database gone) and lose the
    signal.
    """
    return Identification.objects.select_for_update(of=("self",)).select_related("customer")


# What applying Iron's state may change on the row (saved with update_fields).
_APPLIED_IDENTIFICATION_FIELDS = (
    "iron_id",
    "iron_updated_at",
    "iron_created_at",
    "url",
    "review_comment",
    "with_edd",
    "status",
    "superseded_at",
    "next_poll_at",
    "poll_count",
    "updated_at",
)


def _apply_to_locked_identification(
    row: Identification, remote: RemoteIdentification, source: Source
) -> ApplyResult:
    previous = row.status
    if _is_stale(row, remote, source):
        return ApplyResult(row, applied=False, status_changed=False, previous_status=previous)

    status = normalize_identification_status(remote.status)
    if (
        status != previous
        and row.is_terminal
        and not _is_newer(remote.updated_at, row.iron_updated_at)
    ):
        # Leaving a terminal status (a step-up) needs an update strictly newer than the
        # decision we stored; an undated or same-time one may be a late copy.
        logger.info(
            "Ignoring %s update of identification %s to %s: it is not newer than the "
            "stored terminal status %s.",
            source,
            remote.iron_id,
            status,
            previous,
        )
        return ApplyResult(row, applied=False, status_changed=False, previous_status=previous)
    known = status in KNOWN_IDENTIFICATION_STATUSES
    if not known:
        logger.warning(
            "Iron sent an unknown identification status %r for %s; stored as is, no signal sent.",
            status,
            remote.iron_id,
        )
    _take_iron_identity(row, remote)
    if remote.url is not None:
        row.url = remote.url
    if remote.review_comment is not None:
        row.review_comment = remote.review_comment
    if remote.with_edd is not None:
        row.with_edd = remote.with_edd
    changed = status != previous
    row.status = status
    if changed and row.superseded_at is None and row.failed_at is None:
        _supersede_if_replaced(row)
    if row.is_terminal or row.superseded_at is not None:
        row.next_poll_at = None
    elif changed or row.next_poll_at is None:
        # Progress (or a first status): look again soon, backing off from there.
        row.next_poll_at = timezone.now() + iron_settings.POLL_FIRST_DELAY
        row.poll_count = 0
    row.save(update_fields=_APPLIED_IDENTIFICATION_FIELDS)
    if changed and known:
        transaction.on_commit(lambda: _send_identification_signals(row, previous, status, source))
    return ApplyResult(row, applied=True, status_changed=changed, previous_status=previous)


def _supersede_if_replaced(row: Identification) -> None:
    """Keep Iron's rule on a change of status: only the customer's newest identification counts.

    ``row`` (locked, about to be saved) is marked superseded when the customer has a newer
    identification at Iron, or an intent not sent yet (once sent, it will be newer). When
    ``row`` stays current and is in flight, older identifications still in flight are
    superseded instead, so one identification at most is in flight (a step-up of an old
    one never breaks the one-in-flight constraint).
    """
    since = row.iron_created_at or row.created_at
    others = Identification.objects.filter(customer_id=row.customer_id).exclude(pk=row.pk)
    newer = Q(iron_id__isnull=False) & (
        Q(iron_created_at__gt=since) | Q(iron_created_at__isnull=True, created_at__gt=since)
    )
    intent = Q(iron_id__isnull=True, superseded_at__isnull=True, failed_at__isnull=True)
    replaced = others.filter(newer | intent).exists()
    if not replaced and not row.is_terminal:
        older = list(others.in_flight().values_list("pk", flat=True))
        if older:
            others.filter(pk__in=older).update(superseded_at=timezone.now(), next_poll_at=None)
            logger.info(
                "Identification %s is in flight again and newest; superseded older #%s.",
                row.iron_id,
                ", #".join(map(str, older)),
            )
    if replaced:
        row.superseded_at = timezone.now()
        logger.info(
            "Identification %s moved to %s, but the customer has a newer identification; "
            "marked superseded (it no longer counts).",
            row.iron_id,
            row.status,
        )


def _take_iron_identity(
    row: Identification | Customer, remote: RemoteIdentification | RemoteCustomer
) -> None:
    """Iron's id and timestamps onto the row (creation time only if not known yet)."""
    row.iron_id = remote.iron_id
    if remote.updated_at is not None:
        row.iron_updated_at = remote.updated_at
    if remote.created_at is not None and row.iron_created_at is None:
        row.iron_created_at = remote.created_at


def _is_stale(
    row: Identification | Customer,
    remote: RemoteIdentification | RemoteCustomer,
    source: Source,
) -> bool:
    """Refuse another Iron object (``ValueError``); True (and logged) for an older update."""
    what = row._meta.model_name
    if row.iron_id is not None and row.iron_id != remote.iron_id:
        raise ValueError(
            f"Iron {what} {remote.iron_id} applied to local row {row.pk} which is {row.iron_id}"
        )
    if (
        remote.updated_at is None
        or row.iron_updated_at is None
        or remote.updated_at >= row.iron_updated_at
    ):
        return False
    logger.info(
        "Ignoring stale %s update of %s %s (%s at %s; stored %s at %s).",
        source,
        what,
        remote.iron_id,
        remote.status,
        remote.updated_at.isoformat(),
        row.status,
        row.iron_updated_at.isoformat(),
    )
    return True


def _is_newer(candidate: datetime | None, stored: datetime | None) -> bool:
    if candidate is None:
        return False
    return stored is None or candidate > stored


def _send_identification_signals(
    identification: Identification, previous: str, status: str, source: Source
) -> None:
    _send(
        signals.identification_status_changed,
        Identification,
        identification=identification,
        previous_status=previous,
        status=status,
        source=source.value,
    )
    terminal = TERMINAL_SIGNALS.get(status)
    if terminal is None:
        return
    if identification.superseded_at is not None:
        logger.info(
            "Identification %s reached %s after being superseded; no %s signal.",
            identification.iron_id,
            status,
            status,
        )
        return
    _send(
        terminal,
        Identification,
        identification=identification,
        customer=identification.customer,
        previous_status=previous,
        source=source.value,
    )


def apply_customer_state(
    customer: Customer | int,
    remote: RemoteCustomer,
    *,
    source: Source | str,
) -> ApplyResult:
    """Apply Iron's state of one customer to our row (same rules as identifications).

    Sends ``customer_status_changed`` after commit when the status actually changed.
    """
    source = Source(source)
    pk = customer.pk if isinstance(customer, Customer) else customer
    with transaction.atomic():
        row = Customer.objects.select_for_update().get(pk=pk)
        previous = row.status
        if _is_stale(row, remote, source):
            return ApplyResult(row, applied=False, status_changed=False, previous_status=previous)
        known = remote.status in KNOWN_CUSTOMER_STATUSES
        if not known:
            logger.warning(
                "Iron sent an unknown customer status %r for %s; stored as is, no signal sent.",
                remote.status,
                remote.iron_id,
            )
        _take_iron_identity(row, remote)
        for field in ("email", "name", "external_id", "customer_type"):
            value = getattr(remote, field)
            if value is not None:
                setattr(row, field, value)
        changed = remote.status != previous
        row.status = remote.status
        row.save()
        if changed and known:
            status = remote.status
            transaction.on_commit(
                lambda: _send(
                    signals.customer_status_changed,
                    Customer,
                    customer=row,
                    previous_status=previous,
                    status=status,
                    source=source.value,
                )
            )
        return ApplyResult(row, applied=True, status_changed=changed, previous_status=previous)


def _send(signal: Any, sender: type, **kwargs: Any) -> None:
    # send_robust: one failing receiver in the host project must neither stop the others
    # nor turn an already committed change into an error (which would lose the event).
    for receiver, result in signal.send_robust(sender=sender, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "Receiver %r of a django-iron-kyc signal raised %r.",
                receiver,
                result,
                exc_info=result,
            )


# --- building blocks ------------------------------------------------------------------

# How far Iron's clock may be behind ours when deciding whether an identification at Iron
# was created "after our intent" (reconciliation, adoption).
CLOCK_SKEW = timedelta(seconds=60)
# A sweep claims the identifications it polls for this long, so a concurrent sweep skips
# them and a crashed one gives them back.
POLL_LEASE = timedelta(minutes=5)

_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
_SNAPSHOT_FIELDS = (
    "pk",
    "customer_id",
    "iron_id",
    "status",
    "url",
    "review_comment",
    "with_edd",
    "iron_updated_at",
    "created_at",
    "superseded_at",
    "failed_at",
)
_REFUSALS = {
    400: "Iron rejected the request as invalid (400)",
    401: "Iron refused the API key (401; check IRON_KYC_API_KEY)",
    403: "The API key may not do this (403 Forbidden; is it a read-only key?)",
    404: "Iron does not know this customer (404)",
}


def get_client() -> IronClient:
    """Build the Iron client from the ``IRON_KYC_*`` settings as they are now.

    The one place this app builds a client. Use it as a context manager so its connection
    pool is closed: ``with get_client() as client: ...``.
    """
    return IronClient()


def _pk(obj: Any) -> int:
    return int(obj.pk if hasattr(obj, "pk") else obj)


def _describe_failure(exc: IronAPIError, action: str) -> str:
    if exc.is_idempotency_conflict:
        reason = (
            "Iron refused the idempotency key: it was already used for a different request "
            "(409); not retried"
        )
    else:
        reason = _REFUSALS.get(exc.status or 0, "Iron refused the request")
    return f"Could not {action}. {reason}. Iron said: {exc}"


def _in_flight_q() -> Q:
    return Q(superseded_at__isnull=True, failed_at__isnull=True) & ~Q(
        status__in=Identification.TERMINAL_STATUSES
    )


def _created_key(remote: RemoteIdentification) -> datetime:
    return remote.created_at or _EPOCH


def _created_since(remote: RemoteIdentification, when: datetime) -> bool:
    return remote.created_at is not None and remote.created_at >= when - CLOCK_SKEW


def _list_remote(client: IronClient, customer_iron_id: uuid.UUID) -> list[RemoteIdentification]:
    """One paginated list call: every identification Iron has for the customer."""
    remotes = []
    for item in client.iter_identifications(customer_iron_id):
        try:
            remotes.append(RemoteIdentification.from_api(item))
        except ValueError as exc:
            logger.warning(
                "Skipping an identification of customer %s Iron listed in a bad shape: %s",
                customer_iron_id,
                exc,
            )
    return remotes


# --- customers ------------------------------------------------------------------------


def create_customer(
    *,
    email: str,
    customer_type: str = Customer.CustomerType.PERSON,
    name: str = "",
    external_id: str | None = None,
    user: Any = None,
) -> Customer:
    """Create a customer at Iron (``POST /api/customers``) and return the local row.

    Idempotent the same way as identifications: the local row and its idempotency key are
    saved and committed **before** Iron is asked, and a retry of the same intent (the same
    ``user``, or the same ``external_id``, while Iron has not confirmed it yet) reuses that
    row and its key, so a timeout after Iron created the customer never makes a second
    one. A customer Iron already confirmed for ``user`` or ``external_id`` is returned
    without any request. On success Iron's answer is applied with ``source="create"``.

    Call it outside a transaction (inside one, the row only commits with it).

    Raises :class:`~django_iron_kyc.exceptions.IronTransientError` when Iron could not be
    reached or answered 429/5xx (the row stays, with ``last_error``, for a retry) and
    :class:`~django_iron_kyc.exceptions.IronAPIError` when Iron refused (``last_error``
    says why).
    """
    with transaction.atomic():
        row: Customer | None = None
        if user is not None:
            row = Customer.objects.select_for_update().filter(user=user).first()
        if row is None and external_id:
            row = (
                Customer.objects.select_for_update()
                .filter(external_id=external_id)
                .filter(Q(user__isnull=True) | Q(user=user) if user is not None else Q())
                .order_by(F("iron_id").asc(nulls_last=True), "pk")
                .first()
            )
        if row is not None and row.iron_id is not None:
            return row
        values = {
            "email": email,
            "customer_type": customer_type,
            "name": name or "",
            "external_id": external_id or "",
        }
        if row is None:
            row = Customer.objects.create(user=user, **values)
        else:
            # The same intent again: keep its key. If the details changed and Iron already
            # used the key, Iron answers 409 and last_error says so.
            for attr, value in values.items():
                setattr(row, attr, value)
            if user is not None:
                row.user = user
            row.save()
    try:
        with get_client() as client:
            data = client.create_customer(
                email=row.email,
                idempotency_key=row.idempotency_key,
                customer_type=row.customer_type,
                name=row.name or None,
                external_id=row.external_id or None,
            )
        remote = RemoteCustomer.from_api(data)
    except IronAPIError as exc:
        if exc.is_idempotency_conflict:
            logger.error(
                "Iron refused idempotency key %s of customer intent #%s (409): %s",
                row.idempotency_key,
                row.pk,
                exc,
            )
        message = (
            f"Could not reach Iron to create the customer; it will be retried. {exc}"
            if isinstance(exc, IronTransientError)
            else _describe_failure(exc, "create the customer")
        )
        Customer.objects.filter(pk=row.pk).update(last_error=message)
        raise
    except ValueError as exc:
        message = f"Iron's answer to creating the customer is not a customer: {exc}"
        Customer.objects.filter(pk=row.pk).update(last_error=message)
        raise IronAPIError(message, status=201, method="POST", path="/api/customers") from None
    with transaction.atomic():
        Customer.objects.filter(pk=row.pk).update(last_error="")
        result = apply_customer_state(row.pk, remote, source=Source.CREATE)
    instance: Customer = result.instance
    return instance


def refresh_customer(customer: Customer | int) -> Customer:
    """Fetch a customer and all its identifications from Iron now and apply them.

    One ``GET /api/customers/{id}`` (applied with ``source="refresh"``) and one paginated
    ``GET /api/customers/{id}/identifications``. Known identifications get Iron's state;
    unknown ones are adopted as local rows, so every identification at Iron is known
    locally: the newest one is current, older ones still in flight are marked superseded
    (Iron no longer counts them). Task twin: ``tasks.refresh_customer(customer_pk)``.

    Raises :class:`~django_iron_kyc.exceptions.IdentificationStateError` for a customer
    Iron has not created yet, and ``IronAPIError`` (or ``IronTransientError``) when Iron
    fails.
    """
    pk = _pk(customer)
    iron_id = Customer.objects.values_list("iron_id", flat=True).get(pk=pk)
    if iron_id is None:
        raise IdentificationStateError(f"Customer #{pk} does not exist at Iron yet.")
    with get_client() as client:
        remote_customer = RemoteCustomer.from_api(client.get_customer(iron_id))
        remotes = _list_remote(client, iron_id)
    apply_customer_state(pk, remote_customer, source=Source.REFRESH)
    local_by_iron_id, intents = _local_snapshots([r.iron_id for r in remotes], [pk])
    _sync_identifications(pk, remotes, local_by_iron_id, intents.get(pk), source=Source.REFRESH)
    return Customer.objects.get(pk=pk)


def _refresh_customer_state(
    client: IronClient, customer_pk: int, customer_iron_id: uuid.UUID, *, source: Source
) -> None:
    try:
        remote = RemoteCustomer.from_api(client.get_customer(customer_iron_id))
    except (IronAPIError, ValueError) as exc:
        logger.warning("Could not fetch customer %s from Iron: %s", customer_iron_id, exc)
        return
    apply_customer_state(customer_pk, remote, source=source)


# --- identifications: starting and creating -------------------------------------------


def start_identification(
    customer: Customer, *, with_edd: bool = False, force: bool = False
) -> Identification:
    """Record the intent to identify ``customer`` and enqueue its creation at Iron.

    No HTTP here. In one transaction the customer row is locked, the new identification is
    saved with its idempotency key, and ``tasks.create_identification`` is enqueued when
    the transaction commits (never before).

    Iron allows one identification in flight per customer: while one exists that is
    neither terminal, superseded nor failed (including one Iron has not confirmed yet),
    this raises :class:`~django_iron_kyc.exceptions.IdentificationInFlightError`, unless
    ``force=True``, which marks it superseded (nothing it does later counts, and it is no
    longer polled). A customer Iron has not created yet raises
    :class:`~django_iron_kyc.exceptions.IdentificationStateError`. Two concurrent calls
    for one customer make one identification.
    """
    with transaction.atomic():
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        if locked.iron_id is None:
            raise IdentificationStateError(
                f"Customer {locked} does not exist at Iron yet; create it first."
            )
        in_flight = list(
            Identification.objects.in_flight().filter(customer=locked).order_by("-created_at")
        )
        now = timezone.now()
        if in_flight:
            if not force:
                current = in_flight[0]
                raise IdentificationInFlightError(
                    f"Customer {locked} already has identification {current} in flight; "
                    "wait until it is decided, or force a new one (which supersedes it).",
                    identification=current,
                )
            Identification.objects.filter(pk__in=[i.pk for i in in_flight]).update(
                superseded_at=now, next_poll_at=None
            )
            logger.info(
                "Identification(s) %s of customer %s superseded by a forced new one.",
                ", ".join(str(i) for i in in_flight),
                locked.iron_id,
            )
        try:
            with transaction.atomic():
                identification = Identification.objects.create(
                    customer=locked,
                    with_edd=with_edd,
                    # If the task never runs (broker down), the sweep enqueues it again then.
                    next_poll_at=now + iron_settings.CREATE_RECOVERY_DELAY,
                )
        except IntegrityError:
            # The partial unique constraint: another identification got in first.
            raise IdentificationInFlightError(
                f"Customer {locked} already has an identification in flight."
            ) from None
        pk = identification.pk
        # The row is committed whatever happens to this; with the broker down the error is
        # logged and the sweep enqueues the intent later.
        enqueue_on_commit(CREATE_IDENTIFICATION, pk)
    return identification


def submit_identification(identification: Identification | int) -> Identification:
    """Create one identification intent at Iron; what ``tasks.create_identification`` runs.

    Idempotent: nothing happens for an intent Iron already confirmed (``iron_id`` set), a
    failed one or a superseded one (an intent superseded before it was sent is never sent).
    Every attempt of one intent sends the same ``IDEMPOTENCY-KEY`` and counts in
    ``create_attempts``. Outcomes:

    - 201: Iron's identification is applied with ``source="create"`` (status and URL).
    - 409 "Has Pending Identification": the pending one Iron lists (newest by
      ``created_at``) is adopted instead.
    - 409 for a reused key, 400, 401, 403, 404: ``failed_at`` and a readable
      ``last_error``; never retried (a failed intent no longer counts as in flight).
    - A key older than ``IRON_KYC_IDEMPOTENCY_KEY_MAX_AGE``, or ``IRON_KYC_CREATE_MAX_ATTEMPTS``
      reached: never POSTed again. The customer's identifications are listed and one created
      since the intent, not tracked yet, is adopted; otherwise the intent fails with the
      reason.

    Returns the row. Raises only :class:`~django_iron_kyc.exceptions.IronTransientError`
    (429, 5xx, timeouts: retry later; ``last_error`` notes it).
    """
    pk = _pk(identification)
    now = timezone.now()
    with transaction.atomic():
        row = Identification.objects.select_for_update().get(pk=pk)
        if row.iron_id is not None or row.failed_at is not None or row.superseded_at is not None:
            return row
        customer_iron_id = Customer.objects.values_list("iron_id", flat=True).get(
            pk=row.customer_id
        )
        reconcile_reason = ""
        if now - row.created_at >= iron_settings.IDEMPOTENCY_KEY_MAX_AGE:
            reconcile_reason = (
                f"Its idempotency key is older than {iron_settings.IDEMPOTENCY_KEY_MAX_AGE} "
                "and Iron forgets keys after 24 hours"
            )
        elif row.create_attempts >= iron_settings.CREATE_MAX_ATTEMPTS:
            reconcile_reason = f"Gave up after {row.create_attempts} attempts to create it"
        elif customer_iron_id is not None:
            row.create_attempts += 1
            row.next_poll_at = now + iron_settings.CREATE_RECOVERY_DELAY
            row.save(update_fields=["create_attempts", "next_poll_at", "updated_at"])
    if customer_iron_id is None:
        return _fail_intent(pk, "The customer does not exist at Iron; create it first.")

    with get_client() as client:
        if reconcile_reason:
            return _reconcile_intent(client, row, customer_iron_id, reconcile_reason)
        try:
            data = client.create_identification(
                customer_iron_id, idempotency_key=row.idempotency_key, with_edd=row.with_edd
            )
        except IronTransientError as exc:
            Identification.objects.filter(pk=pk, iron_id__isnull=True).update(
                last_error=f"Could not reach Iron (attempt {row.create_attempts}); "
                f"it will be retried with the same key. {exc}"
            )
            raise
        except IronAPIError as exc:
            if exc.is_pending_identification_conflict:
                return _adopt_pending(client, row, customer_iron_id)
            if exc.is_idempotency_conflict:
                logger.error(
                    "Iron refused idempotency key %s of identification intent #%s as reused "
                    "with a different request (409); failing it, not retrying: %s",
                    row.idempotency_key,
                    pk,
                    exc,
                )
            else:
                logger.warning("Iron refused identification intent #%s: %s", pk, exc)
            return _fail_intent(pk, _describe_failure(exc, "create the identification"))
    try:
        remote = RemoteIdentification.from_api(data)
    except ValueError as exc:
        # Not failed: the sweep tries again (same key, same answer) until the attempt cap
        # sends it to reconciliation by listing.
        Identification.objects.filter(pk=pk, iron_id__isnull=True).update(
            last_error=f"Iron's answer to creating the identification is not one: {exc}"
        )
        logger.error("Iron answered intent #%s with a bad identification: %s", pk, exc)
        return Identification.objects.get(pk=pk)
    attached = _attach(pk, remote, source=Source.CREATE)
    return attached if attached is not None else Identification.objects.get(pk=pk)


def _fail_intent(pk: int, message: str) -> Identification:
    """Fail an intent Iron has not confirmed (a confirmed one is left alone)."""
    Identification.objects.filter(pk=pk, iron_id__isnull=True, failed_at__isnull=True).update(
        failed_at=timezone.now(), last_error=message, next_poll_at=None
    )
    return Identification.objects.get(pk=pk)


def _attach(pk: int, remote: RemoteIdentification, *, source: Source) -> Identification | None:
    """Give an unconfirmed intent the identification Iron made for it (then apply it).

    ``None`` when that Iron identification is already tracked by another row, or the
    intent meanwhile got another one.
    """
    with transaction.atomic():
        row = Identification.objects.select_for_update().get(pk=pk)
        newly_known = row.iron_id is None
        if newly_known:
            other = (
                Identification.objects.filter(iron_id=remote.iron_id)
                .values_list("pk", flat=True)
                .first()
            )
            if other is not None:
                logger.warning(
                    "Iron identification %s is already tracked as #%s; not attaching it to "
                    "intent #%s.",
                    remote.iron_id,
                    other,
                    pk,
                )
                return None
        elif row.iron_id != remote.iron_id:
            logger.error(
                "Intent #%s is already Iron identification %s, not %s.",
                pk,
                row.iron_id,
                remote.iron_id,
            )
            return None
        if row.last_error and row.failed_at is None:
            row.last_error = ""
            row.save(update_fields=["last_error", "updated_at"])
        instance: Identification = apply_identification_state(row, remote, source=source).instance
        if newly_known:
            # Deliveries that came for it while it was unknown here act once it is known,
            # after the signals of this state (registered first, sent first).
            transaction.on_commit(partial(_act_on_parked_deliveries, remote.iron_id), robust=True)
        return instance


def _act_on_parked_deliveries(iron_id: uuid.UUID) -> None:
    """Act on the webhook deliveries stored for Iron identification ``iron_id`` while it was
    unknown here (outcome ``unknown_object``), now that an intent has it.

    Iron may send a webhook for an identification before the answer to its creation
    reaches us: the answer was lost and the POST is sent again later, whose idempotent
    replay carries the first state (Pending). The webhook's refresh of the customer usually
    fills the gap; when it fails too, these deliveries would otherwise never count. Acting
    again is safe: stale and repeated states are dropped, so nothing is signalled twice.
    """
    from . import webhooks  # here: webhooks imports this module

    parked = list(
        WebhookDelivery.objects.filter(
            object_iron_id=iron_id, outcome=WebhookDelivery.Outcome.UNKNOWN_OBJECT
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if parked:
        logger.info(
            "Acting on Iron webhook deliveries %s, stored before identification %s was known here.",
            parked,
            iron_id,
        )
    for delivery_pk in parked:
        webhooks.reprocess_delivery(delivery_pk)  # logs each outcome


def _reconcile_intent(
    client: IronClient, row: Identification, customer_iron_id: uuid.UUID, reason: str
) -> Identification:
    """Never POST again: adopt what Iron created since the intent, or fail with ``reason``."""
    remotes = _list_remote(client, customer_iron_id)
    known = set(
        Identification.objects.filter(iron_id__in=[r.iron_id for r in remotes]).values_list(
            "iron_id", flat=True
        )
    )
    candidates = [
        r for r in remotes if r.iron_id not in known and _created_since(r, row.created_at)
    ]
    if candidates:
        remote = max(candidates, key=_created_key)
        attached = _attach(row.pk, remote, source=Source.CREATE)
        if attached is not None:
            logger.info(
                "Intent #%s reconciled by listing (%s): adopted Iron identification %s.",
                row.pk,
                reason,
                remote.iron_id,
            )
            return attached
    logger.warning(
        "Identification intent #%s failed: %s, and Iron lists none created since.", row.pk, reason
    )
    return _fail_intent(
        row.pk,
        f"{reason}. Iron lists no identification created since this intent "
        f"({row.created_at:%Y-%m-%d %H:%M} UTC), so it was not sent again; start a new one.",
    )


def _adopt_pending(
    client: IronClient, row: Identification, customer_iron_id: uuid.UUID
) -> Identification:
    """409 "Has Pending Identification": adopt the pending one Iron lists."""
    remotes = _list_remote(client, customer_iron_id)
    pending = [
        r
        for r in remotes
        if normalize_identification_status(r.status) not in Identification.TERMINAL_STATUSES
    ]
    if not pending:
        return _fail_intent(
            row.pk,
            "Iron answered 409 Has Pending Identification but lists no pending "
            "identification for the customer; start a new one later.",
        )
    remote = max(pending, key=_created_key)
    attached = _attach(row.pk, remote, source=Source.CREATE)
    if attached is not None:
        logger.info(
            "Iron has pending identification %s (409); adopted by intent #%s.",
            remote.iron_id,
            row.pk,
        )
        return attached
    # Iron keeps pending an identification we already track: typically one superseded
    # locally by force=True. Iron still counts it, so it becomes current again.
    message = (
        f"Iron refused a new identification: {remote.iron_id} is still pending there "
        "(409 Has Pending Identification)."
    )
    with transaction.atomic():
        failed = _fail_intent(row.pk, message)
        try:
            with transaction.atomic():
                revived = Identification.objects.filter(
                    iron_id=remote.iron_id,
                    customer_id=row.customer_id,
                    superseded_at__isnull=False,
                ).update(superseded_at=None, next_poll_at=timezone.now(), stale_at=None)
        except IntegrityError:
            revived = 0
        if revived:
            message += " It is the current identification again."
            Identification.objects.filter(pk=row.pk).update(last_error=message)
            failed.last_error = message
    logger.warning("Intent #%s: %s", row.pk, message)
    return failed


# --- identifications: following them -------------------------------------------------


@dataclass
class SyncResult:
    """What applying one customer's list of identifications did (pks)."""

    applied: list[int] = field(default_factory=list)
    status_changed: list[int] = field(default_factory=list)
    adopted: list[int] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)


def _local_snapshots(
    iron_ids: Iterable[uuid.UUID], customer_pks: Sequence[int]
) -> tuple[dict[uuid.UUID, dict[str, Any]], dict[int, dict[str, Any]]]:
    """One query: the rows of these Iron ids, and every row in flight of these customers.

    Returns (confirmed rows by Iron id, unconfirmed intent by customer pk).
    """
    rows = Identification.objects.filter(
        Q(iron_id__in=list(iron_ids)) | (Q(customer_id__in=list(customer_pks)) & _in_flight_q())
    ).values(*_SNAPSHOT_FIELDS)
    by_iron_id: dict[uuid.UUID, dict[str, Any]] = {}
    intents: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row["iron_id"] is None:
            intents[row["customer_id"]] = row
        else:
            by_iron_id[row["iron_id"]] = row
    return by_iron_id, intents


def _snapshot_in_flight(row: Mapping[str, Any]) -> bool:
    return (
        row["superseded_at"] is None
        and row["failed_at"] is None
        and row["status"] not in Identification.TERMINAL_STATUSES
    )


def _steps_up(row: Mapping[str, Any], remote: RemoteIdentification | None) -> bool:
    """Will applying ``remote`` take this terminal row back into flight (Iron's step-up)?"""
    return (
        remote is not None
        and row["superseded_at"] is None
        and row["failed_at"] is None
        and row["status"] in Identification.TERMINAL_STATUSES
        and normalize_identification_status(remote.status) not in Identification.TERMINAL_STATUSES
        and _is_newer(remote.updated_at, row["iron_updated_at"])
    )


def _differs(row: Mapping[str, Any], remote: RemoteIdentification) -> bool:
    """Would applying ``remote`` change the row? (Decided without a query.)"""
    stored = row["iron_updated_at"]
    if remote.updated_at is not None and stored is not None and remote.updated_at < stored:
        return False
    if normalize_identification_status(remote.status) != row["status"]:
        return True
    if remote.updated_at is not None and remote.updated_at != stored:
        return True
    return any(
        getattr(remote, name) is not None and getattr(remote, name) != row[name]
        for name in ("url", "review_comment", "with_edd")
    )


def _sync_identifications(
    customer_pk: int,
    remotes: Sequence[RemoteIdentification],
    local_by_iron_id: Mapping[uuid.UUID, Mapping[str, Any]],
    intent: Mapping[str, Any] | None,
    *,
    source: Source,
) -> SyncResult:
    """Apply one customer's identifications as Iron lists them; adopt unknown ones.

    Iron counts the newest identification: it is current, unless an unconfirmed local
    intent is newer (once sent, it will be). Local identifications in flight that are not
    current are superseded; unknown ones are adopted (superseded unless current). Costs
    no query when nothing changed.
    """
    result = SyncResult()
    if not remotes:
        return result
    ordered = sorted(remotes, key=_created_key)
    newest = ordered[-1]
    current: RemoteIdentification | None = newest
    adopt_into_intent: RemoteIdentification | None = None
    if intent is not None:
        if newest.iron_id not in local_by_iron_id and _created_since(newest, intent["created_at"]):
            adopt_into_intent = newest
        else:
            current = None
    if current is not None:
        # Also the ones this listing steps up: applied while the current one is not
        # tracked yet, they would be in flight and keep it from being adopted.
        listed = {remote.iron_id: remote for remote in remotes}
        outdated = [
            row["pk"]
            for row in local_by_iron_id.values()
            if row["customer_id"] == customer_pk
            and (_snapshot_in_flight(row) or _steps_up(row, listed.get(row["iron_id"])))
            and row["iron_id"] != current.iron_id
        ]
        if outdated:
            Identification.objects.filter(pk__in=outdated, superseded_at__isnull=True).update(
                superseded_at=timezone.now(), next_poll_at=None
            )
            result.superseded.extend(outdated)
            logger.info(
                "Iron counts identification %s for customer #%s now; superseded #%s.",
                current.iron_id,
                customer_pk,
                ", #".join(map(str, outdated)),
            )
        counted = local_by_iron_id.get(current.iron_id)
        if (
            counted is not None
            and counted["customer_id"] == customer_pk
            and counted["superseded_at"] is not None
            and counted["failed_at"] is None
        ):
            _revive(counted["pk"], current)
    for remote in ordered:
        row = local_by_iron_id.get(remote.iron_id)
        applied: ApplyResult | None
        if row is not None:
            if row["customer_id"] != customer_pk:
                logger.error(
                    "Iron lists identification %s under customer #%s, but it is tracked "
                    "under customer #%s; not applied.",
                    remote.iron_id,
                    customer_pk,
                    row["customer_id"],
                )
                continue
            if not _differs(row, remote):
                continue
            applied = apply_identification_state(row["pk"], remote, source=source)
        elif remote is adopt_into_intent and intent is not None:
            instance = _attach(intent["pk"], remote, source=source)
            if instance is None:
                continue
            logger.info(
                "Intent #%s is Iron identification %s (found by listing).",
                instance.pk,
                remote.iron_id,
            )
            applied = ApplyResult(instance, True, True, "")
            result.adopted.append(instance.pk)
        else:
            applied = _adopt_new(
                customer_pk, remote, source=source, superseded=remote is not current
            )
            if applied is None:
                continue
            result.adopted.append(applied.instance.pk)
        if applied.applied:
            result.applied.append(applied.instance.pk)
        if applied.status_changed:
            result.status_changed.append(applied.instance.pk)
    return result


def _revive(pk: int, remote: RemoteIdentification) -> bool:
    """Iron counts an identification we marked superseded: it is current again.

    Happens when a forced restart lost a race at Iron (the superseded intent's POST was
    created after the forced one) or the forced one was never created.
    """
    in_flight = normalize_identification_status(remote.status) not in (
        Identification.TERMINAL_STATUSES
    )
    try:
        with transaction.atomic():
            revived = Identification.objects.filter(pk=pk, superseded_at__isnull=False).update(
                superseded_at=None,
                stale_at=None,
                next_poll_at=timezone.now() if in_flight else None,
            )
    except IntegrityError:
        revived = 0
    if revived:
        logger.warning(
            "Iron counts identification %s, which was superseded here: it is current again.",
            remote.iron_id,
        )
    return bool(revived)


def _adopt_new(
    customer_pk: int, remote: RemoteIdentification, *, source: Source, superseded: bool
) -> ApplyResult | None:
    """Track an identification Iron has and we did not know (then apply it)."""
    now = timezone.now()
    try:
        with transaction.atomic():
            row = Identification.objects.create(
                customer_id=customer_pk,
                iron_id=remote.iron_id,
                with_edd=bool(remote.with_edd),
                superseded_at=now if superseded else None,
                created_at=min(remote.created_at, now) if remote.created_at else now,
            )
            result = apply_identification_state(row, remote, source=source)
    except IntegrityError:
        existing = Identification.objects.filter(iron_id=remote.iron_id).first()
        if existing is None:
            logger.warning(
                "Could not adopt Iron identification %s for customer #%s: another "
                "identification is in flight.",
                remote.iron_id,
                customer_pk,
            )
            return None
        return apply_identification_state(existing, remote, source=source)
    logger.info(
        "Adopted Iron identification %s (%s) for customer #%s%s.",
        remote.iron_id,
        remote.status,
        customer_pk,
        " as superseded" if superseded else "",
    )
    return result


# --- sandbox --------------------------------------------------------------------------


def sandbox_approve(identification: Identification) -> Identification:
    """Approve an identification in Iron's sandbox and apply the result (``source="sandbox"``).

    ``POST /api/sandbox/identification/{id}`` with ``{"approved": true}``. Raises
    :class:`~django_iron_kyc.exceptions.SandboxNotAllowedError` before any request unless
    sandbox actions are on (``IRON_KYC_SANDBOX_ACTIONS``, and only against the sandbox or
    a loopback fake), and :class:`~django_iron_kyc.exceptions.IdentificationStateError`
    for an identification Iron has not confirmed.
    """
    return _sandbox_decide(identification, approved=True)


def sandbox_decline(identification: Identification) -> Identification:
    """Decline an identification in Iron's sandbox (see :func:`sandbox_approve`)."""
    return _sandbox_decide(identification, approved=False)


def _sandbox_decide(identification: Identification, *, approved: bool) -> Identification:
    if not iron_settings.SANDBOX_ACTIONS:
        raise SandboxNotAllowedError(
            "Sandbox actions are off: they need IRON_KYC_SANDBOX_ACTIONS and a sandbox (or "
            f"loopback) IRON_KYC_BASE_URL, not {iron_settings.base_host}."
        )
    row = Identification.objects.get(pk=identification.pk)
    if row.iron_id is None:
        raise IdentificationStateError(
            f"Identification {row} does not exist at Iron yet; nothing to decide."
        )
    with get_client() as client:
        data = client.sandbox_decide(row.iron_id, approved=approved, idempotency_key=uuid.uuid4())
        remote = RemoteIdentification.from_api(data)
        result = apply_identification_state(row, remote, source=Source.SANDBOX)
        if result.status_changed:
            # Iron moved the customer too (Approved -> Active...). Whether the sandbox also
            # sends webhooks is undocumented, so fetch the customer rather than wait for one.
            customer_iron_id = Customer.objects.values_list("iron_id", flat=True).get(
                pk=row.customer_id
            )
            if customer_iron_id is not None:
                _refresh_customer_state(
                    client, row.customer_id, customer_iron_id, source=Source.SANDBOX
                )
    instance: Identification = result.instance
    return instance


# --- the sweep ------------------------------------------------------------------------


@dataclass
class SweepResult:
    """Counts from one run of :func:`poll_due_identifications`."""

    customers: int = 0
    polled: int = 0
    changed: int = 0
    adopted: int = 0
    superseded: int = 0
    stale: int = 0
    recovered: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def poll_due_identifications() -> SweepResult:
    """The periodic sweep (run it every minute through ``tasks.poll_pending_identifications``).

    1. Flags identifications still undecided ``IRON_KYC_POLL_MAX_AGE`` after creation
       (``stale_at``, a warning logged; no more polling).
    2. Enqueues again the creation of intents Iron never confirmed whose last attempt is
       older than ``IRON_KYC_CREATE_RECOVERY_DELAY`` (a lost task, a broker outage).
    3. Polls the due identifications (confirmed, in flight, ``next_poll_at`` passed, not
       stale) in batches of ``IRON_KYC_POLL_BATCH_SIZE`` customers: one paginated list call
       per customer covers all of its identifications; changes are applied with
       ``source="poll"`` (and the customer fetched again when something changed); the next
       poll backs off from ``IRON_KYC_POLL_FIRST_DELAY``, doubling up to
       ``IRON_KYC_POLL_MAX_INTERVAL``.

    Memory and queries per batch are bounded (keyset pagination, value lists). A sweep
    stops at the first transient error (Iron down: the next sweep tries again).
    """
    result = SweepResult()
    now = timezone.now()
    result.stale = _flag_stale(now)
    result.recovered = _recover_intents(now)
    client: IronClient | None = None
    after = 0
    try:
        while True:
            batch = _claim_due_batch(now, after)
            if not batch:
                break
            after = batch[-1][1]
            if client is None:
                client = get_client()
            try:
                _poll_batch(client, batch, result)
            except IronTransientError as exc:
                result.errors += 1
                logger.warning("Poll sweep stopped early, Iron is unavailable: %s", exc)
                break
    finally:
        if client is not None:
            client.close()
    if result.polled or result.stale or result.recovered or result.errors:
        logger.info("Poll sweep: %s", result.as_dict())
    return result


def _flag_stale(now: datetime) -> int:
    cutoff = now - iron_settings.POLL_MAX_AGE
    size = max(1, iron_settings.POLL_BATCH_SIZE)
    candidates = (
        Identification.objects.pending()
        .filter(stale_at__isnull=True)
        .filter(
            Q(iron_created_at__lt=cutoff) | Q(iron_created_at__isnull=True, created_at__lt=cutoff)
        )
        .order_by("pk")
    )
    count, after = 0, 0
    while True:
        rows = list(candidates.filter(pk__gt=after).values_list("pk", "iron_id", "status")[:size])
        if not rows:
            return count
        Identification.objects.filter(pk__in=[r[0] for r in rows], stale_at__isnull=True).update(
            stale_at=now, next_poll_at=None
        )
        for pk, iron_id, status in rows:
            logger.warning(
                "Identification #%s (%s) is still %s after %s; flagged stale, no longer "
                "polled. Refresh its customer or decide what to do.",
                pk,
                iron_id,
                status,
                iron_settings.POLL_MAX_AGE,
            )
        count += len(rows)
        after = rows[-1][0]


def _recover_intents(now: datetime) -> int:
    size = max(1, iron_settings.POLL_BATCH_SIZE)
    delay = iron_settings.CREATE_RECOVERY_DELAY
    candidates = (
        Identification.objects.filter(
            iron_id__isnull=True,
            failed_at__isnull=True,
            superseded_at__isnull=True,
            created_at__lte=now - delay,
        )
        .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
        .order_by("pk")
    )
    count, after = 0, 0
    while True:
        with transaction.atomic():
            pks = list(
                candidates.filter(pk__gt=after)
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[:size]
            )
            if not pks:
                return count
            Identification.objects.filter(pk__in=pks).update(next_poll_at=now + delay)
            for pk in pks:
                enqueue_on_commit(CREATE_IDENTIFICATION, pk)
        logger.warning(
            "Re-enqueued the creation of %d identification intent(s) Iron never confirmed: %s",
            len(pks),
            pks,
        )
        count += len(pks)
        after = pks[-1]


def _claim_due_batch(
    now: datetime, after_customer: int
) -> list[tuple[int, int, uuid.UUID | None, int]]:
    """Lock, lease and return the next due identifications (one per customer, by customer)."""
    size = max(1, iron_settings.POLL_BATCH_SIZE)
    with transaction.atomic():
        rows = list(
            Identification.objects.pending()
            .filter(
                next_poll_at__lte=now,
                stale_at__isnull=True,
                customer_id__gt=after_customer,
                customer__iron_id__isnull=False,
            )
            .order_by("customer_id", "pk")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", "customer_id", "customer__iron_id", "poll_count")[:size]
        )
        if rows:
            Identification.objects.filter(pk__in=[r[0] for r in rows]).update(
                next_poll_at=timezone.now() + POLL_LEASE
            )
    return rows


def _backoff_schedule(now: datetime) -> Case | Value:
    """``next_poll_at`` after one more poll: POLL_FIRST_DELAY doubling, capped."""
    first = iron_settings.POLL_FIRST_DELAY
    cap = iron_settings.POLL_MAX_INTERVAL
    whens = []
    n = 0
    while first > timedelta(0) and first * 2 ** (n + 1) < cap and n < 32:
        whens.append(When(poll_count=n, then=Value(now + first * 2 ** (n + 1))))
        n += 1
    default = Value(now + cap, output_field=DateTimeField())
    if not whens:
        return default
    return Case(*whens, default=default, output_field=DateTimeField())


def _poll_batch(
    client: IronClient,
    batch: Sequence[tuple[int, int, uuid.UUID | None, int]],
    result: SweepResult,
) -> None:
    remotes_by_customer: dict[int, tuple[uuid.UUID, list[RemoteIdentification]]] = {}
    for _row_pk, customer_pk, customer_iron_id, _count in batch:
        if customer_pk in remotes_by_customer or customer_iron_id is None:
            continue
        try:
            remotes = _list_remote(client, customer_iron_id)
        except IronTransientError:
            raise
        except IronAPIError as exc:
            if exc.status in (401, 403):
                raise
            result.errors += 1
            logger.error("Polling customer %s failed: %s", customer_iron_id, exc)
            remotes = []
        remotes_by_customer[customer_pk] = (customer_iron_id, remotes)
    result.customers += len(remotes_by_customer)
    result.polled += len(batch)

    local_by_iron_id, intents = _local_snapshots(
        (r.iron_id for _, remotes in remotes_by_customer.values() for r in remotes),
        list(remotes_by_customer),
    )
    status_changed: set[int] = set()
    for customer_pk, (customer_iron_id, remotes) in remotes_by_customer.items():
        synced = _sync_identifications(
            customer_pk, remotes, local_by_iron_id, intents.get(customer_pk), source=Source.POLL
        )
        status_changed.update(synced.status_changed)
        result.changed += len(synced.status_changed)
        result.adopted += len(synced.adopted)
        result.superseded += len(synced.superseded)
        if synced.status_changed or synced.adopted:
            # The customer's status at Iron moves with its identification's.
            _refresh_customer_state(client, customer_pk, customer_iron_id, source=Source.POLL)

    now = timezone.now()
    polled = [row[0] for row in batch]
    Identification.objects.filter(pk__in=[pk for pk in polled if pk not in status_changed]).filter(
        _in_flight_q()
    ).update(
        poll_count=F("poll_count") + 1,
        last_polled_at=now,
        next_poll_at=_backoff_schedule(now),
    )
    if status_changed:
        Identification.objects.filter(pk__in=[pk for pk in polled if pk in status_changed]).update(
            last_polled_at=now
        )
