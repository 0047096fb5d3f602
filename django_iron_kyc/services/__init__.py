"""Where Iron's client and our models meet: the app's operations, one module per job.

Every change of state that comes from Iron (webhook, poll, create, sandbox call, refresh)
goes through :func:`apply_identification_state` or :func:`apply_customer_state`
(:mod:`.apply`, after the ordering rule of :mod:`.ordering`; the state rule itself in
:mod:`.state`). The public operations built on them:

- :func:`create_customer`: ``POST /api/customers``, idempotent (:mod:`.customers`).
- :func:`start_identification`: record the intent (no HTTP) and enqueue its creation;
  :func:`submit_identification`: what the ``create_identification`` task runs (:mod:`.intents`).
- :func:`refresh_customer`: fetch a customer and all its identifications now
  (:mod:`.customers`, applied by :mod:`.sync`).
- :func:`sandbox_approve` / :func:`sandbox_decline`: sandbox decisions (:mod:`.sandbox`).
- :func:`poll_due_identifications`: the periodic sweep (:mod:`.polling`).
- :func:`verification_status` / :func:`start_verification`: a signed-in user's own
  verification, as the end-user endpoint and page show it (:mod:`.verification`).
- :func:`apply_retention`: delete old deliveries and clear outdated free text, as
  ``IRON_KYC_DELIVERY_RETENTION`` says (:mod:`.retention`).
- :func:`export_customer` / :func:`forget_customer`: everything held about one customer,
  exported or deleted (:mod:`.privacy`).

Stored webhook deliveries are acted on in :mod:`.deliveries`.
"""

from ..payloads import RemoteCustomer, RemoteIdentification, parse_iron_datetime
from .apply import apply_customer_state, apply_identification_state
from .customers import create_customer, refresh_customer
from .intents import start_identification, submit_identification
from .iron import get_client
from .polling import PollSweepResult, poll_due_identifications
from .privacy import (
    EXPORT_FORMAT,
    customer_data_counts,
    deliveries_naming,
    export_customer,
    forget_customer,
)
from .retention import (
    PruneResult,
    RetentionResult,
    apply_retention,
    clear_outdated_free_text,
    prune_deliveries,
)
from .sandbox import sandbox_approve, sandbox_decline
from .sources import Source
from .state import ApplyResult
from .verification import (
    Phase,
    StartResult,
    VerificationStatus,
    start_verification,
    verification_status,
)

__all__ = [
    "EXPORT_FORMAT",
    "ApplyResult",
    "Phase",
    "PollSweepResult",
    "PruneResult",
    "RemoteCustomer",
    "RemoteIdentification",
    "RetentionResult",
    "Source",
    "StartResult",
    "VerificationStatus",
    "apply_customer_state",
    "apply_identification_state",
    "apply_retention",
    "clear_outdated_free_text",
    "create_customer",
    "customer_data_counts",
    "deliveries_naming",
    "export_customer",
    "forget_customer",
    "get_client",
    "parse_iron_datetime",
    "poll_due_identifications",
    "prune_deliveries",
    "refresh_customer",
    "sandbox_approve",
    "sandbox_decline",
    "start_identification",
    "start_verification",
    "submit_identification",
    "verification_status",
]
