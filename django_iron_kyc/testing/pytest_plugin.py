"""pytest plugin registered through the ``pytest11`` entry point ``iron_kyc``.

Installing django-iron-kyc gives a host project's tests these fixtures:

- ``fake_iron``: a started :class:`~django_iron_kyc.testing.FakeIron`, stopped after the
  test. With pytest-django and configured settings, ``IRON_KYC_BASE_URL``,
  ``IRON_KYC_API_KEY`` and ``IRON_KYC_WEBHOOK_SECRET`` point at it for the test. Options
  go through a marker: ``@pytest.mark.fake_iron(conflict_on_pending=True)``.
- ``send_iron_webhook``: a :class:`~django_iron_kyc.testing.WebhookSender`:
  ``send_iron_webhook(event_or_delivery)`` signs an event dict with the configured secret
  (or takes a fake's delivery as it is) and POSTs it to ``reverse("iron_kyc:webhook")``
  through Django's test client with CSRF checks on; returns the response.
  ``send_iron_webhook.send`` is a ``send`` for ``fake_iron.deliver_webhooks(send=...)``.
- ``deliver_fake_webhooks``: ``deliver_fake_webhooks()`` sends everything in
  ``fake_iron``'s outbox that way and returns the responses.
- ``iron_signals``: a :class:`~django_iron_kyc.testing.SignalRecorder` of every
  django-iron-kyc signal sent during the test.

When a test that uses one of them fails, the plugin looks for the two set-up mistakes that
make the app's tasks never run, and adds what to do to the failure report: on-commit
callbacks still waiting (the test's database transaction never commits: it needs
``django_db(transaction=True)``), and the tasks going to Celery's unconfigured default app
(check ``iron_kyc.W003``).

Nothing here reads Django settings until a fixture runs, so the plugin is harmless in a
project without pytest-django or Django settings.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connections

from ..checks import check_celery_app
from ..conf import iron_settings
from .fake import FakeIron
from .signals import SignalRecorder
from .webhook_sender import WebhookSender

# The fixtures, the two classes they give (also importable from here, as before), the
# failure-report hook and the hints it adds.
__all__ = [
    "SignalRecorder",
    "WebhookSender",
    "deliver_fake_webhooks",
    "fake_iron",
    "iron_signals",
    "pytest_runtest_makereport",
    "send_iron_webhook",
    "setup_hints",
]

# A test that asks for any of these uses the kit: its failures get the set-up hints.
_KIT_FIXTURES = frozenset(
    {"fake_iron", "send_iron_webhook", "deliver_fake_webhooks", "iron_signals"}
)

_NEVER_COMMITS = (
    "{count} on-commit callback(s) never ran: this test's database transaction never "
    "commits. django-iron-kyc starts the Celery task that creates an identification at "
    "Iron, and sends its signals, only once a transaction commits, so an identification "
    "started here stays empty (status '', no url). Mark the test "
    "@pytest.mark.django_db(transaction=True), or run what a commit would run with "
    "pytest-django's django_capture_on_commit_callbacks(execute=True)."
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fake_iron(**options): keyword arguments for the FakeIron of the fake_iron fixture",
    )


@pytest.fixture
def fake_iron(request: pytest.FixtureRequest) -> Iterator[FakeIron]:
    """A running fake Iron; the ``IRON_KYC_*`` settings point at it during the test."""
    marker = request.node.get_closest_marker("fake_iron")
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    if "webhook_secret" not in options and django_settings.configured:
        secrets = iron_settings.WEBHOOK_SECRETS
        if secrets:
            options["webhook_secret"] = secrets[0]
    fake = FakeIron(**options).start()
    try:
        if django_settings.configured:
            try:
                settings = request.getfixturevalue("settings")
            except pytest.FixtureLookupError:  # no pytest-django: the caller sets them
                settings = None
            if settings is not None:
                for name, value in fake.django_settings().items():
                    setattr(settings, name, value)
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def send_iron_webhook() -> WebhookSender:
    """Sign and POST a webhook delivery to the app's webhook URL (see :class:`WebhookSender`)."""
    return WebhookSender()


@pytest.fixture
def deliver_fake_webhooks(fake_iron: FakeIron, send_iron_webhook: WebhookSender) -> Any:
    """``deliver_fake_webhooks()``: send the fake's outbox to the app; returns the responses."""

    def deliver() -> list[Any]:
        return fake_iron.deliver_webhooks(send=send_iron_webhook.send)

    return deliver


@pytest.fixture
def iron_signals() -> Iterator[SignalRecorder]:
    """Records every django-iron-kyc signal sent during the test."""
    with SignalRecorder() as recorder:
        yield recorder


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Add the set-up hints to a failed test that uses the kit (see the module docstring)."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    fixtures = set(getattr(item, "fixturenames", ()))
    if not fixtures & _KIT_FIXTURES:
        return
    # Callbacks run by django_capture_on_commit_callbacks(execute=True) stay in the list.
    captured = "django_capture_on_commit_callbacks" in fixtures
    hints = setup_hints(on_commit=not captured)
    if hints:
        report.sections.append(
            ("django-iron-kyc: why the app may not have acted", "\n".join(hints))
        )


def setup_hints(*, on_commit: bool = True) -> list[str]:
    """What in this test's set-up keeps the app's tasks and signals from running, if anything.

    ``on_commit=False`` leaves out the on-commit callbacks still waiting (for a test that
    runs them itself).
    """
    if not django_settings.configured:
        return []
    hints = []
    waiting = sum(len(c.run_on_commit) for c in connections.all(initialized_only=True))
    if waiting and on_commit:
        hints.append(_NEVER_COMMITS.format(count=waiting))
    hints.extend(f"{m.id}: {m.msg} {m.hint}" for m in check_celery_app())
    return hints
