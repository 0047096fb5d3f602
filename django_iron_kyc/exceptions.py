"""Exceptions raised by django-iron-kyc.

Everything derives from :class:`IronKycError`, so ``except IronKycError`` catches all of
it. Configuration problems also derive from Django's ``ImproperlyConfigured`` and bad
webhook signatures from ``SuspiciousOperation``, so Django already knows how to treat them.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation

__all__ = [
    "IdentificationInFlightError",
    "IdentificationStateError",
    "InvalidPayloadError",
    "IronAPIError",
    "IronConfigurationError",
    "IronKycError",
    "IronTransientError",
    "SandboxNotAllowedError",
    "VerificationRequestError",
    "WebhookVerificationError",
]


class IronKycError(Exception):
    """Root of every exception this app raises."""


class IronConfigurationError(IronKycError, ImproperlyConfigured):
    """A required ``IRON_KYC_*`` setting is missing or invalid."""


class IronAPIError(IronKycError):
    """Iron answered with an error, or could not be reached.

    Whatever shape Iron's error body had (plain text, a JSON string, ``{"error": {...}}``,
    ``{"message", "trace_id"}``), it ends up in these attributes:

    - ``status``: the HTTP status code (``None`` when no response arrived),
    - ``code``: Iron's error code when it sent one, else ``None``,
    - ``message``: a readable message,
    - ``request_id``: Iron's ``request_id`` or ``trace_id``, for Iron's support,
    - ``method`` and ``path`` of the request (never the API key).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        method: str | None = None,
        path: str | None = None,
        body: Any = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.method = method
        self.path = path
        self.body = body
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.method} {self.path}" if self.method and self.path else "Iron API"
        parts = [f"{where}: {self.status if self.status is not None else 'no response'}"]
        parts.append(self.message)
        extra = []
        if self.code:
            extra.append(f"code={self.code}")
        if self.request_id:
            extra.append(f"request_id={self.request_id}")
        text = " ".join(parts)
        return f"{text} ({', '.join(extra)})" if extra else text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )

    def __reduce__(self) -> Any:
        # Keep the attributes when pickled (Celery stores exceptions in results).
        return (_rebuild_api_error, (type(self), self.message, self.__dict__.copy()))

    @property
    def is_pending_identification_conflict(self) -> bool:
        """409 "Has Pending Identification": Iron refused a second identification."""
        text = f"{self.code or ''} {self.message}".lower().replace("_", " ")
        return self.status == 409 and "pending identification" in text

    @property
    def is_idempotency_conflict(self) -> bool:
        """409 that is not the pending-identification one: a key reused with another body."""
        return self.status == 409 and not self.is_pending_identification_conflict


def _rebuild_api_error(cls: type[IronAPIError], message: str, state: dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, str(error))
    return error


class IronTransientError(IronAPIError):
    """A failure worth retrying later: 429, 5xx, a timeout or a dropped connection.

    ``retry_after`` holds Iron's ``Retry-After`` in seconds when it sent one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class IdentificationInFlightError(IronKycError):
    """The customer already has an identification that is neither terminal nor superseded.

    Iron allows one at a time; pass ``force=True`` to supersede the one in flight.
    """

    def __init__(self, message: str, *, identification: Any = None) -> None:
        self.identification = identification
        super().__init__(message)


class IdentificationStateError(IronKycError):
    """An operation does not fit the identification's current state."""


class SandboxNotAllowedError(IronKycError):
    """A sandbox-only call was attempted while sandbox actions are off."""


class InvalidPayloadError(IronKycError, ValueError):
    """JSON (a webhook body, an API answer) that is not Iron's shape.

    Also a ``ValueError``. The message names the field and never quotes the value, so it is
    safe to log, store and return to Iron.
    """


class WebhookVerificationError(IronKycError, SuspiciousOperation):
    """A webhook delivery failed authentication (signature, timestamp, headers)."""


class VerificationRequestError(IronKycError, ValueError):
    """A user's request to start cannot be met as asked; ``code`` says why.

    ``"email_required"``: the user has no email address, which Iron needs for a customer.
    ``"edd_not_allowed"``: enhanced due diligence was asked for while
    ``IRON_KYC_VERIFICATION_ALLOW_EDD`` is off. The message can be shown to the user.
    """

    def __init__(self, message: str, *, code: str) -> None:
        self.code = code
        super().__init__(message)
