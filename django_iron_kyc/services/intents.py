"""Identifications we start: record the intent, create it at Iron, and settle what Iron made.

An intent is a row saved (with its idempotency key) before Iron is asked; the
``create_identification`` task sends it. When Iron's answer is lost or refused, the intent is
reconciled by listing the customer's identifications, or adopts the pending one Iron holds.
"""

from __future__ import annotations

import logging
import uuid

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..client import IronClient
from ..conf import iron_settings
from ..enqueue import CREATE_IDENTIFICATION, enqueue_on_commit
from ..exceptions import (
    IdentificationInFlightError,
    IdentificationStateError,
    InvalidPayloadError,
    IronAPIError,
    IronTransientError,
)
from ..models import Customer, Identification
from ..payloads import RemoteIdentification, normalize_identification_status
from .apply import apply_identification_state
from .deliveries import act_on_parked_deliveries
from .iron import created_key, created_since, describe_failure, get_client, list_remote
from .sources import Source

__all__ = ["attach", "start_identification", "submit_identification"]

logger = logging.getLogger(__name__)


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
    pk = identification.pk if isinstance(identification, Identification) else identification
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
            return _fail_intent(pk, describe_failure(exc, "create the identification"))
    try:
        remote = RemoteIdentification.from_api(data)
    except InvalidPayloadError as exc:
        # Not failed: the sweep tries again (same key, same answer) until the attempt cap
        # sends it to reconciliation by listing.
        Identification.objects.filter(pk=pk, iron_id__isnull=True).update(
            last_error=f"Iron's answer to creating the identification is not one: {exc}"
        )
        logger.error("Iron answered intent #%s with a bad identification: %s", pk, exc)
        return Identification.objects.get(pk=pk)
    attached = attach(pk, remote, source=Source.CREATE)
    return attached if attached is not None else Identification.objects.get(pk=pk)


def _fail_intent(pk: int, message: str) -> Identification:
    """Fail an intent Iron has not confirmed (a confirmed one is left alone)."""
    Identification.objects.filter(pk=pk, iron_id__isnull=True, failed_at__isnull=True).update(
        failed_at=timezone.now(), last_error=message, next_poll_at=None
    )
    return Identification.objects.get(pk=pk)


def attach(pk: int, remote: RemoteIdentification, *, source: Source) -> Identification | None:
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
            iron_id = remote.iron_id

            def act_on_parked() -> None:
                act_on_parked_deliveries(iron_id)

            transaction.on_commit(act_on_parked, robust=True)
        return instance


def _reconcile_intent(
    client: IronClient, row: Identification, customer_iron_id: uuid.UUID, reason: str
) -> Identification:
    """Never POST again: adopt what Iron created since the intent, or fail with ``reason``."""
    remotes = list_remote(client, customer_iron_id)
    known = set(
        Identification.objects.filter(iron_id__in=[r.iron_id for r in remotes]).values_list(
            "iron_id", flat=True
        )
    )
    candidates = [r for r in remotes if r.iron_id not in known and created_since(r, row.created_at)]
    if candidates:
        remote = max(candidates, key=created_key)
        attached = attach(row.pk, remote, source=Source.CREATE)
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
    remotes = list_remote(client, customer_iron_id)
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
    remote = max(pending, key=created_key)
    attached = attach(row.pk, remote, source=Source.CREATE)
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
