"""A fake Iron: a real HTTP server on 127.0.0.1 that behaves as our contract with Iron says.

Start it from a test (or use the ``fake_iron`` pytest fixture), point ``IRON_KYC_BASE_URL``
at ``fake.base_url`` and the app talks to it over real HTTP::

    with FakeIron() as fake:
        customer = fake.add_customer(email="ada@example.com")
        ...
        fake.set_identification_status(identification_id, "Approved")
        fake.deliver_webhooks(send=...)

What it imitates (see ``IRON_API.md``, Part A), and where each part lives:

- :mod:`.api`: the endpoints ``POST /api/customers``, ``GET /api/customers/{id}``,
  ``POST /api/customers/{id}/identifications/v2``, ``GET /api/customers/{id}/identifications``,
  ``GET /api/identifications/{id}`` and ``POST /api/sandbox/identification/{id}``; the API
  key, idempotency keys, and Iron's error bodies (:mod:`.answers`);
- :mod:`.state`: Iron's rules for customers and identifications (the newest identification
  drives the customer's status; a new one supersedes the one in flight, or with
  ``conflict_on_pending=True`` is refused with 409 ``Has Pending Identification``; sandbox
  decisions only on an undecided identification), and the fake's clock;
- :mod:`.outbox`: webhooks signed with :mod:`django_iron_kyc.signing`, held in
  :attr:`FakeIron.outbox` until :meth:`FakeIron.deliver_webhooks` (or sent at once with
  ``auto_deliver``);
- :mod:`.faults`: faults on request (:meth:`FakeIron.fail_next`);
- :mod:`.server`: the HTTP server, which records every request (:attr:`FakeIron.requests`);
- :mod:`.hosted_page`: the page an identification's ``url`` opens, to decide it by hand;
- :mod:`.iron`: :class:`FakeIron`, which starts the parts and hands each call to one.

Everything is thread-safe: the server answers from several threads at once.
"""

from __future__ import annotations

from .clock import iron_time
from .faults import DropMode, Fault
from .iron import FakeIron
from .options import ERROR_FORMATS, LIST_ORDERS, FakeOptions
from .outbox import Delivery, HTTPDeliveryResult, Sender
from .server import RecordedRequest
from .state import Creation

__all__ = [
    "ERROR_FORMATS",
    "LIST_ORDERS",
    "Creation",
    "Delivery",
    "DropMode",
    "FakeIron",
    "FakeOptions",
    "Fault",
    "HTTPDeliveryResult",
    "RecordedRequest",
    "Sender",
    "iron_time",
]
