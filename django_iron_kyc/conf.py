"""Settings for django-iron-kyc, read from ``django.conf.settings``.

Every setting is a flat ``IRON_KYC_*`` name in the host project's settings. Nothing is
copied into module constants or read at import time: each setting is read when first used
and kept until an ``IRON_KYC_*`` setting changes. Django's ``setting_changed`` signal
(sent by ``override_settings`` and by pytest-django's ``settings`` fixture) clears what is
kept, as DRF does for ``REST_FRAMEWORK``; code that assigns to ``django.conf.settings``
directly calls :meth:`IronKycSettings.reload` afterwards.

Use the shared instance::

    from django_iron_kyc.conf import iron_settings
    iron_settings.BASE_URL
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.functional import cached_property

from .validators import is_loopback_host, url_host

__all__ = [
    "DEFAULT_BASE_URL",
    "KNOWN_HOSTS",
    "PRODUCTION_HOST",
    "SANDBOX_HOST",
    "WEBHOOK_DEFERRED",
    "WEBHOOK_INLINE",
    "WEBHOOK_PROCESSING_MODES",
    "IronKycSettings",
    "iron_settings",
]

SANDBOX_HOST = "api.sandbox.iron.xyz"
PRODUCTION_HOST = "api.iron.xyz"
KNOWN_HOSTS = frozenset({SANDBOX_HOST, PRODUCTION_HOST})

DEFAULT_BASE_URL = f"https://{SANDBOX_HOST}"

# IRON_KYC_WEBHOOK_PROCESSING's values.
WEBHOOK_INLINE = "inline"
WEBHOOK_DEFERRED = "deferred"
WEBHOOK_PROCESSING_MODES = (WEBHOOK_INLINE, WEBHOOK_DEFERRED)


class IronKycSettings:
    """Typed view of the ``IRON_KYC_*`` settings. Attribute names drop the prefix.

    Each value is read on first use and kept (some are read on every webhook delivery)
    until :meth:`reload`, which ``setting_changed`` calls for any ``IRON_KYC_*`` setting.
    """

    prefix = "IRON_KYC_"

    def reload(self) -> None:
        """Forget every value read so far: the next use reads ``settings`` again."""
        self.__dict__.clear()

    def _get(self, name: str, default: Any = None) -> Any:
        return getattr(settings, self.prefix + name, default)

    # --- Iron's API -------------------------------------------------------------------

    @cached_property
    def API_KEY(self) -> str:
        """``IRON_KYC_API_KEY`` (str, required): sent as ``X-API-Key``. Never logged or stored."""
        value = self._get("API_KEY", "")
        return value if isinstance(value, str) else ""

    @cached_property
    def BASE_URL(self) -> str:
        """``IRON_KYC_BASE_URL`` (str): Iron's host, without ``/api``.

        Default ``https://api.sandbox.iron.xyz``. The client adds ``/api/...`` paths.
        """
        value = self._get("BASE_URL", DEFAULT_BASE_URL)
        return str(value).rstrip("/")

    @cached_property
    def base_host(self) -> str | None:
        """The host name of ``BASE_URL`` (``None`` if it does not parse)."""
        return url_host(self.BASE_URL)

    @cached_property
    def is_sandbox_host(self) -> bool:
        """True when ``BASE_URL`` points at Iron's sandbox or at a loopback fake."""
        host = self.base_host
        return host == SANDBOX_HOST or is_loopback_host(host)

    @cached_property
    def is_production_host(self) -> bool:
        return self.base_host == PRODUCTION_HOST

    @cached_property
    def TIMEOUT(self) -> tuple[float, float]:
        """``IRON_KYC_TIMEOUT``: seconds, a number or a ``(connect, read)`` pair.

        Default ``(5, 30)``. Every request to Iron carries it.
        """
        value = self._get("TIMEOUT", (5.0, 30.0))
        if isinstance(value, (int, float)):
            return (float(value), float(value))
        connect, read = value
        return (float(connect), float(read))

    @cached_property
    def API_VERSION(self) -> str | None:
        """``IRON_KYC_API_VERSION`` (str or None): sent as ``X-API-Version`` when set."""
        value = self._get("API_VERSION", None)
        return str(value) if value else None

    @cached_property
    def SUB_PARTNER_ID(self) -> str | None:
        """``IRON_KYC_SUB_PARTNER_ID`` (str or None): sent as ``X-SUB-PARTNER-ID`` when set."""
        value = self._get("SUB_PARTNER_ID", None)
        return str(value) if value else None

    @cached_property
    def PROXY(self) -> str | None:
        """``IRON_KYC_PROXY`` (str or None, default None): an ``http://`` or ``https://`` proxy
        URL, such as ``http://user:password@proxy.internal:3128``, for every request to Iron.

        Its credentials never appear in logs, errors or reprs. ``HTTPS_PROXY`` and the other
        environment variables are never read: only this setting sends requests via a proxy.
        """
        value = self._get("PROXY", None)
        return str(value) if value else None

    @cached_property
    def CA_BUNDLE(self) -> str | None:
        """``IRON_KYC_CA_BUNDLE`` (path or None, default None): a PEM file of the certificate
        authorities that Iron's TLS certificate is verified against (a private CA, such as
        that of a TLS-inspecting proxy). None keeps certifi's bundle.

        TLS verification cannot be turned off, and ``REQUESTS_CA_BUNDLE`` is never read.
        """
        value = self._get("CA_BUNDLE", None)
        return str(value) if value else None

    @cached_property
    def MAX_RETRIES(self) -> int:
        """``IRON_KYC_MAX_RETRIES`` (int, default 2): in-request retries of 429/5xx/connection
        errors, with exponential backoff and jitter. Celery tasks retry further on top."""
        return int(self._get("MAX_RETRIES", 2))

    @cached_property
    def RETRY_BACKOFF(self) -> float:
        """``IRON_KYC_RETRY_BACKOFF`` (float seconds, default 0.5): backoff factor for the
        in-request retries."""
        return float(self._get("RETRY_BACKOFF", 0.5))

    @cached_property
    def RETRY_AFTER_MAX(self) -> float:
        """``IRON_KYC_RETRY_AFTER_MAX`` (float seconds, default 10): the longest ``Retry-After``
        the client waits for inside a request. A longer one ends the request with
        ``IronTransientError.retry_after`` set, so a Celery retry waits instead of a worker."""
        return float(self._get("RETRY_AFTER_MAX", 10.0))

    @cached_property
    def IDEMPOTENCY_KEY_MAX_AGE(self) -> timedelta:
        """``IRON_KYC_IDEMPOTENCY_KEY_MAX_AGE`` (seconds, default 23 h): a stored key older
        than this is never sent again (Iron forgets keys after 24 h); the intent is reconciled
        by listing instead."""
        return timedelta(seconds=float(self._get("IDEMPOTENCY_KEY_MAX_AGE", 23 * 3600)))

    # --- Sandbox ----------------------------------------------------------------------

    @cached_property
    def SANDBOX_ACTIONS(self) -> bool:
        """``IRON_KYC_SANDBOX_ACTIONS`` (bool or None): allow the sandbox approve/decline calls.

        Default (None): on only when ``BASE_URL`` is Iron's sandbox host or a loopback address.
        Even when forced on, sandbox calls are refused against any other host.
        """
        value = self._get("SANDBOX_ACTIONS", None)
        if value is None:
            return self.is_sandbox_host
        return bool(value) and self.is_sandbox_host

    @cached_property
    def SANDBOX_ACTIONS_SETTING(self) -> bool | None:
        """The raw ``IRON_KYC_SANDBOX_ACTIONS`` value, for the system checks."""
        value = self._get("SANDBOX_ACTIONS", None)
        return None if value is None else bool(value)

    # --- Webhooks ---------------------------------------------------------------------

    @cached_property
    def WEBHOOK_SECRETS(self) -> list[str]:
        """``IRON_KYC_WEBHOOK_SECRET`` (str or list of str): the secret(s) Iron signs with.

        A list allows rotation: a delivery is accepted if any secret verifies it. A secret
        written ``whsec_<base64>`` is base64-decoded; any other is used as its UTF-8 bytes.
        """
        value = self._get("WEBHOOK_SECRET", None)
        if not value:
            return []
        if isinstance(value, str):
            return [value]
        return [str(v) for v in value if v]

    @cached_property
    def WEBHOOK_TOLERANCE(self) -> int:
        """``IRON_KYC_WEBHOOK_TOLERANCE`` (int seconds, default 300): how far
        ``webhook-timestamp`` may be from now, in either direction."""
        return int(self._get("WEBHOOK_TOLERANCE", 300))

    @cached_property
    def WEBHOOK_MAX_BODY_SIZE(self) -> int:
        """``IRON_KYC_WEBHOOK_MAX_BODY_SIZE`` (int bytes, default 65536): larger bodies get 413."""
        return int(self._get("WEBHOOK_MAX_BODY_SIZE", 64 * 1024))

    @cached_property
    def WEBHOOK_PROCESSING(self) -> str:
        """``IRON_KYC_WEBHOOK_PROCESSING`` (``"inline"`` or ``"deferred"``, default
        ``"inline"``): when a stored delivery is acted on.

        ``"inline"``: in the request, before answering (a processing failure answers 500,
        so Iron may send it again). ``"deferred"``: the request verifies, stores and answers;
        a Celery task acts on the delivery moments later, and the webhook sweep retries what
        failed. Deferred answers several times faster and keeps bursts off the database
        locks; it needs a Celery worker and beat running.
        """
        return str(self._get("WEBHOOK_PROCESSING", WEBHOOK_INLINE))

    @cached_property
    def WEBHOOK_DEFERRED(self) -> bool:
        """True when ``IRON_KYC_WEBHOOK_PROCESSING`` is ``"deferred"``."""
        return bool(self._get("WEBHOOK_PROCESSING", WEBHOOK_INLINE) == WEBHOOK_DEFERRED)

    @cached_property
    def WEBHOOK_RETRY_DELAY(self) -> timedelta:
        """``IRON_KYC_WEBHOOK_RETRY_DELAY`` (seconds, default 60): the webhook sweep processes a
        delivery still not acted on this long after it arrived, and retries a failed one
        after this delay, doubled for each attempt already made."""
        return timedelta(seconds=float(self._get("WEBHOOK_RETRY_DELAY", 60)))

    @cached_property
    def WEBHOOK_MAX_ATTEMPTS(self) -> int:
        """``IRON_KYC_WEBHOOK_MAX_ATTEMPTS`` (int, default 5): the webhook sweep stops retrying
        a failed delivery after this many processing attempts (it stays ``failed``, with its
        traceback, for ``iron_kyc_reprocess_webhooks`` or the admin)."""
        return int(self._get("WEBHOOK_MAX_ATTEMPTS", 5))

    @cached_property
    def DELIVERY_RETENTION(self) -> timedelta | None:
        """``IRON_KYC_DELIVERY_RETENTION`` (timedelta, seconds or None; default 30 days): how long
        deliveries acted on and outdated review comments are kept (``apply_retention``)."""
        return _optional_duration(self._get("DELIVERY_RETENTION", timedelta(days=30)))

    # --- Polling ----------------------------------------------------------------------

    @cached_property
    def POLL_FIRST_DELAY(self) -> timedelta:
        """``IRON_KYC_POLL_FIRST_DELAY`` (seconds, default 60): first poll after creation."""
        return timedelta(seconds=float(self._get("POLL_FIRST_DELAY", 60)))

    @cached_property
    def POLL_MAX_INTERVAL(self) -> timedelta:
        """``IRON_KYC_POLL_MAX_INTERVAL`` (seconds, default 6 h): the backoff between polls of
        a pending identification grows up to this and no further."""
        return timedelta(seconds=float(self._get("POLL_MAX_INTERVAL", 6 * 3600)))

    @cached_property
    def POLL_MAX_AGE(self) -> timedelta:
        """``IRON_KYC_POLL_MAX_AGE`` (seconds, default 30 days): an identification still not
        terminal this long after creation is flagged stale and no longer polled."""
        return timedelta(seconds=float(self._get("POLL_MAX_AGE", 30 * 86400)))

    @cached_property
    def POLL_BATCH_SIZE(self) -> int:
        """``IRON_KYC_POLL_BATCH_SIZE`` (int, default 100): customers handled per sweep batch."""
        return int(self._get("POLL_BATCH_SIZE", 100))

    @cached_property
    def TASK_MAX_RETRIES(self) -> int:
        """``IRON_KYC_TASK_MAX_RETRIES`` (int, default 8): Celery retries of transient errors."""
        return int(self._get("TASK_MAX_RETRIES", 8))

    @cached_property
    def TASK_RETRY_BACKOFF(self) -> float:
        """``IRON_KYC_TASK_RETRY_BACKOFF`` (float seconds, default 10): first Celery retry delay;
        it doubles per retry (with jitter) and never undercuts Iron's ``Retry-After``."""
        return float(self._get("TASK_RETRY_BACKOFF", 10.0))

    @cached_property
    def TASK_RETRY_BACKOFF_MAX(self) -> float:
        """``IRON_KYC_TASK_RETRY_BACKOFF_MAX`` (float seconds, default 600): the longest
        backoff between two Celery retries."""
        return float(self._get("TASK_RETRY_BACKOFF_MAX", 600.0))

    @cached_property
    def CREATE_MAX_ATTEMPTS(self) -> int:
        """``IRON_KYC_CREATE_MAX_ATTEMPTS`` (int, default 20): POSTs of one identification
        intent (Celery retries, redeliveries and sweeps together). After that the intent is
        reconciled by listing and, if Iron has nothing for it, failed: a poison message
        cannot loop forever."""
        return int(self._get("CREATE_MAX_ATTEMPTS", 20))

    @cached_property
    def CREATE_RECOVERY_DELAY(self) -> timedelta:
        """``IRON_KYC_CREATE_RECOVERY_DELAY`` (seconds, default 300): an identification intent
        Iron has not confirmed this long after its last attempt is enqueued again by the
        sweep (what an outage of the broker or a lost task left behind)."""
        return timedelta(seconds=float(self._get("CREATE_RECOVERY_DELAY", 300)))

    # --- End-user verification (the JSON endpoint and the page) -------------------------

    @cached_property
    def VERIFICATION_CUSTOMER_DATA(self) -> Any:
        """``IRON_KYC_VERIFICATION_CUSTOMER_DATA`` (dotted path, callable or None, default
        None): ``callable(user) -> dict`` giving the Iron customer's ``email``, ``name``,
        ``customer_type`` and ``external_id`` when a user starts their own verification.
        None: the user's email, full name, ``Person`` and primary key."""
        return self._get("VERIFICATION_CUSTOMER_DATA", None)

    @cached_property
    def VERIFICATION_ALLOW_EDD(self) -> bool:
        """``IRON_KYC_VERIFICATION_ALLOW_EDD`` (bool, default False): whether a user may ask
        for enhanced due diligence (``{"with_edd": true}``) when starting their own."""
        return bool(self._get("VERIFICATION_ALLOW_EDD", False))

    @cached_property
    def VERIFICATION_THROTTLE_RATE(self) -> str | None:
        """``IRON_KYC_VERIFICATION_THROTTLE_RATE`` (DRF rate such as ``"20/hour"``, or None;
        default ``"20/hour"``): how often one user may ask to start a verification (the JSON
        ``POST`` and the page's button together). None: not throttled."""
        value = self._get("VERIFICATION_THROTTLE_RATE", "20/hour")
        return str(value) if value else None

    @cached_property
    def VERIFICATION_BASE_TEMPLATE(self) -> str | None:
        """``IRON_KYC_VERIFICATION_BASE_TEMPLATE`` (template name or None, default None): the
        template ``iron_kyc/verify.html`` extends. None: the project's ``base.html`` if it has
        one, else the app's own minimal ``iron_kyc/base.html``."""
        value = self._get("VERIFICATION_BASE_TEMPLATE", None)
        return str(value) if value else None

    @cached_property
    def VERIFICATION_REDIRECT_WAIT(self) -> float:
        """``IRON_KYC_VERIFICATION_REDIRECT_WAIT`` (seconds, default 3): after the page's
        button is pressed, how long to wait for Iron's hosted URL before sending the browser
        to the status page instead (which says the verification is being prepared)."""
        return float(self._get("VERIFICATION_REDIRECT_WAIT", 3.0))


def _optional_duration(value: Any) -> timedelta | None:
    """A ``timedelta``, a number of seconds or None, as a ``timedelta`` or None."""
    if value is None or isinstance(value, timedelta):
        return value
    return timedelta(seconds=float(value))


iron_settings = IronKycSettings()


def _reload_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(IronKycSettings.prefix):
        iron_settings.reload()


setting_changed.connect(_reload_on_change, dispatch_uid="django_iron_kyc.conf.reload")
