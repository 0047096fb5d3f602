"""Iron's state rules, with no HTTP and no Django: customers, identifications, the clock.

- The newest identification drives the customer's status (:data:`CUSTOMER_STATUS_FOR`):
  Approved -> ``Active``; any other known status -> ``IdentificationRequired``; an unknown
  status leaves the customer alone. Iron's real flow goes through ``SigningsRequired``
  before ``Active``; the fake skips signings.
- A new identification supersedes the ones in flight (not terminal, not superseded): they
  keep their own status, and can still change, but no longer move the customer.
- Sandbox and hosted-page decisions apply only to an undecided identification
  (:data:`DECIDABLE_STATUSES`).
- Every change gets a timestamp strictly after the previous one, on the fake's clock.

A change Iron sends a webhook for is handed to ``on_change`` as a :class:`StatusChange`.
Everything here is thread-safe.
"""

from __future__ import annotations

import copy
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from .clock import IronClock, iron_time, parse_iron_time

__all__ = [
    "CUSTOMER_STATUS_FOR",
    "DECIDABLE_STATUSES",
    "IDENTIFICATION_REQUIRED",
    "NO_HOSTED_PAGE",
    "TERMINAL_STATUSES",
    "Creation",
    "IdDict",
    "IronState",
    "NotDecidableError",
    "PendingIdentificationError",
    "StatusChange",
    "UnknownObjectError",
]

# Written here on purpose: the fake is Iron's side and does not use the app's models.
TERMINAL_STATUSES = frozenset({"Approved", "Declined", "Expired", "Archived"})
DECIDABLE_STATUSES = frozenset({"Pending", "Processed", "PendingReview"})
IDENTIFICATION_REQUIRED = "IdentificationRequired"
# The customer's status once its newest identification has this status.
CUSTOMER_STATUS_FOR: dict[str, str] = {
    "Approved": "Active",
    "Pending": IDENTIFICATION_REQUIRED,
    "Processed": IDENTIFICATION_REQUIRED,
    "PendingReview": IDENTIFICATION_REQUIRED,
    "Declined": IDENTIFICATION_REQUIRED,
    "Rejected": IDENTIFICATION_REQUIRED,
    "Expired": IDENTIFICATION_REQUIRED,
    "Archived": IDENTIFICATION_REQUIRED,
}
# The host of hosted-page URLs while no server serves the page.
NO_HOSTED_PAGE = "https://verify.fake-iron.invalid"


class IdDict(dict[str, dict[str, Any]]):
    """Iron objects by id: a ``uuid.UUID`` key works as well as its string."""

    def __getitem__(self, key: object) -> dict[str, Any]:
        return super().__getitem__(str(key))

    def __contains__(self, key: object) -> bool:
        return super().__contains__(str(key))

    def get(self, key: object, default: Any = None) -> Any:
        return super().get(str(key), default)


@dataclass(frozen=True)
class StatusChange:
    """A status Iron sends a webhook for: an identification's or a customer's."""

    kind: Literal["identification", "customer"]
    customer_id: str
    object_id: str
    status: str
    at: datetime


@dataclass(frozen=True)
class Creation:
    """One identification Iron created, and what was in flight for its customer just before.

    ``idempotency_key`` is the key of the API request that created it (``None`` when a test
    added it directly). ``in_flight_before`` maps id to status.
    """

    customer_id: str
    identification_id: str
    idempotency_key: str | None
    in_flight_before: dict[str, str]


class UnknownObjectError(KeyError):
    """No customer or identification with this id (``kind`` says which was looked for)."""

    def __init__(self, kind: Literal["customer", "identification"], object_id: str) -> None:
        self.kind = kind
        self.object_id = object_id
        super().__init__(object_id)

    def __str__(self) -> str:
        return f"no {self.kind} {self.object_id}"


class PendingIdentificationError(Exception):
    """A new identification was refused: the customer has one in flight."""


class NotDecidableError(Exception):
    """The identification is already decided (its ``status`` is not undecided)."""

    def __init__(self, status: str) -> None:
        self.status = status
        super().__init__(f"Identification is not pending (status {status})")


class IronState:
    """Iron's customers and identifications, as Iron's JSON, changed by Iron's rules.

    Methods answer copies, except the snapshots :meth:`customers` and
    :meth:`identifications`, whose objects are the live ones: read them, and change
    state through the methods. Unknown ids raise :class:`UnknownObjectError` (a
    ``KeyError``). ``page_base_url`` is where identification URLs point.
    """

    def __init__(
        self,
        *,
        clock: IronClock | None = None,
        partner_id: str | None = None,
        on_change: Callable[[StatusChange], object] | None = None,
    ) -> None:
        self.clock = clock or IronClock()
        self.partner_id = partner_id or str(uuid.uuid4())
        self.page_base_url = NO_HOSTED_PAGE
        self._on_change = on_change
        self._lock = threading.RLock()
        self._customers = IdDict()
        self._identifications = IdDict()
        self._superseded: set[str] = set()
        self._creations: list[Creation] = []
        self._emails = 0

    # --- reading ------------------------------------------------------------------------

    def customers(self) -> IdDict:
        """Every customer by id, in creation order (a new dict of the live objects)."""
        with self._lock:
            return IdDict(self._customers)

    def identifications(self) -> IdDict:
        """Every identification by id, in creation order (a new dict of the live objects)."""
        with self._lock:
            return IdDict(self._identifications)

    def superseded(self) -> frozenset[str]:
        """The ids of the identifications a newer one replaced while they were in flight."""
        with self._lock:
            return frozenset(self._superseded)

    def creations(self) -> list[Creation]:
        """Every identification created so far, oldest first, with what was in flight then."""
        with self._lock:
            return list(self._creations)

    def customer(self, customer_id: uuid.UUID | str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._customer(str(customer_id)))

    def identification(self, identification_id: uuid.UUID | str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._identification(str(identification_id)))

    def is_superseded(self, identification_id: uuid.UUID | str) -> bool:
        with self._lock:
            return str(identification_id) in self._superseded

    def identifications_of(self, customer_id: uuid.UUID | str) -> list[dict[str, Any]]:
        """A customer's identifications, oldest first (copies)."""
        with self._lock:
            return copy.deepcopy(self._identifications_of(str(customer_id)))

    def newest_identification(self, customer_id: uuid.UUID | str) -> dict[str, Any] | None:
        """The identification that drives the customer's status (a copy), if any."""
        with self._lock:
            items = self._identifications_of(str(customer_id))
            return copy.deepcopy(items[-1]) if items else None

    # --- changing -----------------------------------------------------------------------

    def add_customer(
        self, email: str | None = None, status: str = IDENTIFICATION_REQUIRED, **fields: Any
    ) -> dict[str, Any]:
        """Create a customer; ``fields`` override or add fields (``id``, ``name``...)."""
        with self._lock:
            if email is None:
                self._emails += 1
                email = f"customer{self._emails}@example.com"
            moment = iron_time(self.clock.tick())
            customer_id = str(fields.pop("id", None) or uuid.uuid4())
            customer: dict[str, Any] = {
                "id": customer_id,
                "customer_type": "Person",
                "name": "",
                "email": email,
                "status": status,
                "partner_id": self.partner_id,
                "identification_ids": [],
                "signing_ids": [],
                "created_at": moment,
                "updated_at": moment,
            }
            customer.update({k: v for k, v in fields.items() if v is not None})
            self._customers[customer_id] = customer
            return copy.deepcopy(customer)

    def add_identification(
        self,
        customer_id: uuid.UUID | str,
        status: str = "Pending",
        *,
        with_edd: bool = False,
        notify: bool = False,
        supersede: bool = True,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Create an identification; it supersedes the ones in flight and moves the customer.

        With ``supersede=False`` a customer with one in flight is refused with
        :class:`PendingIdentificationError`. ``fields`` override or add fields (a datetime
        is written as Iron writes it). Status changes are told to ``on_change`` if
        ``notify``.
        """
        with self._lock:
            customer_id = str(customer_id)
            customer = self._customer(customer_id)
            in_flight = self._in_flight(customer_id)
            if in_flight and not supersede:
                raise PendingIdentificationError(customer_id)
            moment = self.clock.tick()
            identification_id = str(fields.pop("id", None) or uuid.uuid4())
            token = secrets.token_urlsafe(16)
            identification: dict[str, Any] = {
                "id": identification_id,
                "customer_id": customer_id,
                "status": status,
                "url": f"{self.page_base_url}/verify/{identification_id}?token={token}",
                "with_edd": with_edd,
                "created_at": iron_time(moment),
                "updated_at": iron_time(moment),
            }
            for key, value in fields.items():
                identification[key] = iron_time(value) if isinstance(value, datetime) else value
            before = {old["id"]: old["status"] for old in in_flight}
            self._creations.append(
                Creation(customer_id, identification_id, idempotency_key, before)
            )
            self._superseded.update(old["id"] for old in in_flight)
            self._identifications[identification_id] = identification
            customer["identification_ids"].append(identification_id)
            self._follow_newest(customer_id, moment, notify)
            return copy.deepcopy(identification)

    def set_identification_status(
        self,
        identification_id: uuid.UUID | str,
        status: str,
        *,
        review_comment: str | None = None,
        notify: bool = True,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """Move an identification to ``status`` (any string; unknown ones are kept as they are).

        Bumps ``updated_at`` (to ``at`` if given, else the clock's next tick), sets
        ``review_comment`` if given and moves the customer if this is its newest
        identification. With ``notify``, the identification's change is told to
        ``on_change``, and the customer's when its status changed.
        """
        with self._lock:
            identification = self._identification(str(identification_id))
            moment = at if at is not None else self.clock.tick()
            identification["status"] = status
            identification["updated_at"] = iron_time(moment)
            if review_comment is not None:
                identification["review_comment"] = review_comment
            customer_id = identification["customer_id"]
            if notify:
                self._tell("identification", customer_id, identification["id"], status, moment)
            self._follow_newest(customer_id, moment, notify)
            return copy.deepcopy(identification)

    def decide(
        self, identification_id: uuid.UUID | str, status: str, *, notify: bool = True
    ) -> dict[str, Any]:
        """:meth:`set_identification_status` for an undecided identification only; else
        :class:`NotDecidableError`."""
        with self._lock:
            current = self._identification(str(identification_id))["status"]
            if current not in DECIDABLE_STATUSES:
                raise NotDecidableError(current)
            return self.set_identification_status(identification_id, status, notify=notify)

    def set_customer_status(
        self, customer_id: uuid.UUID | str, status: str, *, notify: bool = True
    ) -> dict[str, Any]:
        """Set a customer's status directly (e.g. ``Suspended``)."""
        with self._lock:
            customer = self._customer(str(customer_id))
            moment = self.clock.tick()
            customer["status"] = status
            customer["updated_at"] = iron_time(moment)
            if notify:
                self._tell("customer", customer["id"], customer["id"], status, moment)
            return copy.deepcopy(customer)

    def archive_customer(
        self, customer_id: uuid.UUID | str, *, notify: bool = True
    ) -> dict[str, Any]:
        """Archive a customer and all of its identifications, for good (Iron's archive
        endpoint). Archiving again changes nothing; Iron does not say what it answers then."""
        with self._lock:
            customer = self._customer(str(customer_id))
            moment = self.clock.tick()
            kinds: list[tuple[Literal["identification", "customer"], dict[str, Any]]]
            kinds = [("identification", i) for i in self._identifications_of(customer["id"])]
            for kind, item in (*kinds, ("customer", customer)):
                if item["status"] != "Archived":
                    item.update(status="Archived", updated_at=iron_time(moment))
                    if notify:
                        self._tell(kind, customer["id"], item["id"], "Archived", moment)
            return copy.deepcopy(customer)

    # --- rules --------------------------------------------------------------------------

    def _customer(self, customer_id: str) -> dict[str, Any]:
        customer: dict[str, Any] | None = self._customers.get(customer_id)
        if customer is None:
            raise UnknownObjectError("customer", customer_id)
        return customer

    def _identification(self, identification_id: str) -> dict[str, Any]:
        identification: dict[str, Any] | None = self._identifications.get(identification_id)
        if identification is None:
            raise UnknownObjectError("identification", identification_id)
        return identification

    def _identifications_of(self, customer_id: str) -> list[dict[str, Any]]:
        ids = self._customer(customer_id)["identification_ids"]
        # Creation order breaks ties between equal timestamps given by a test.
        order = {identification_id: n for n, identification_id in enumerate(ids)}
        items = [self._identifications[i] for i in ids]
        return sorted(items, key=lambda i: (parse_iron_time(i["created_at"]), order[i["id"]]))

    def _in_flight(self, customer_id: str) -> list[dict[str, Any]]:
        return [
            i
            for i in self._identifications_of(customer_id)
            if i["status"] not in TERMINAL_STATUSES and i["id"] not in self._superseded
        ]

    def _follow_newest(self, customer_id: str, moment: datetime, notify: bool) -> None:
        """The customer takes the status its newest identification gives it."""
        customer = self._customer(customer_id)
        items = self._identifications_of(customer_id)
        if not items:
            return
        newest = items[-1]
        customer["identification_status"] = newest["status"]
        status = CUSTOMER_STATUS_FOR.get(newest["status"])
        if status is None or status == customer["status"]:
            return
        customer["status"] = status
        customer["updated_at"] = iron_time(moment)
        if notify:
            self._tell("customer", customer_id, customer_id, status, moment)

    def _tell(
        self,
        kind: Literal["identification", "customer"],
        customer_id: str,
        object_id: str,
        status: str,
        moment: datetime,
    ) -> None:
        if self._on_change is not None:
            self._on_change(StatusChange(kind, customer_id, object_id, status, moment))
