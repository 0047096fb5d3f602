"""What the end-user JSON endpoint and the page share as views."""

from __future__ import annotations

from typing import Any

from django.db import connections, transaction

__all__ = ["NonAtomicRequestsMixin"]


class NonAtomicRequestsMixin:
    """Opts the view out of ``ATOMIC_REQUESTS`` on every database.

    Starting a verification talks to Iron and commits as it goes (the customer's
    idempotency key before the request, the task enqueued on commit), so it never runs
    inside the request's transaction.
    """

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        view = super().as_view(**initkwargs)  # type: ignore[misc]
        for alias in connections:
            view = transaction.non_atomic_requests(using=alias)(view)
        return view
