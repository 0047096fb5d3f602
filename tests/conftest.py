"""Suite-wide guards and the fixtures many folders share.

- ``iron``: the fake Iron the app talks to (the plugin's ``fake_iron``); ``sandbox_iron``
  the same with ``IRON_KYC_SANDBOX_ACTIONS`` on. tests/settings.py already turns the
  client's retries off (``IRON_KYC_MAX_RETRIES = 0``), so a fault reaches the app at once.
- ``no_secrets_in_logs``: after the test, no secret, API key, signature or whole body sent
  in any log record (tests/webhooks/ use it for every test); ``no_personal_data_in_logs``:
  after the test, none of the personal data the test lists (emails, names, review comments).
- ``worker_app``: a real, non-eager Celery worker (in-process thread) for the test.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery import _state as celery_state
from celery.contrib.testing.worker import start_worker

from django_iron_kyc.testing import FakeIron
from tests import support
from tests.celery import app as test_app

POSTGRES_ONLY = pytest.mark.skip(
    reason="needs PostgreSQL: row locks and concurrent connections "
    "(DATABASE_URL=postgres://... TEST_DB_NAME=...)"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``postgres`` unless the suite runs on PostgreSQL."""
    from django.db import connection

    if connection.vendor == "postgresql":
        return
    for item in items:
        if item.get_closest_marker("postgres"):
            item.add_marker(POSTGRES_ONLY)


# What makes this suite's tasks run in the calling thread instead of going to a broker.
EAGER_SETTINGS = ("task_always_eager", "task_eager_propagates")


def _celery_state() -> dict[str, Any]:
    return {
        "current app": celery_state.get_current_app(),
        "default app": celery_state.default_app,
        **{name: test_app.conf[name] for name in EAGER_SETTINGS},
    }


@pytest.fixture(autouse=True)
def celery_app_left_as_found() -> Iterator[None]:
    """Fail a test that leaves another Celery app current or default, or changes eagerness.

    Shared tasks find their app when called: the calling thread's current app, and in any
    other thread (a race's threads, a live server's) Celery's default app. ``start_worker``
    makes its worker app the default, and ``Celery()`` makes a new app current. Left there,
    a non-eager app sends every later test's tasks to a broker nobody consumes, silently: a
    test far away then finds no request at Iron (tests/services/test_concurrency.py did, after
    tests/test_celery_worker.py's worker app stayed the default). This puts the suite's app
    back and fails the test that left it, at teardown.
    """
    before = _celery_state()
    expected = {"current app": test_app, "default app": test_app}
    wrong = {k: v for k, v in expected.items() if before[k] is not v}
    if wrong:
        test_app.set_current()
        test_app.set_default()
        pytest.fail(f"before this test, Celery's {wrong} should be {test_app!r}")
    yield
    after = _celery_state()
    changed = {
        k: (before[k], after[k])
        for k in before
        if (after[k] is not before[k] if k in expected else after[k] != before[k])
    }
    if changed:
        test_app.set_current()
        test_app.set_default()
        for name in EAGER_SETTINGS:
            if name in changed:
                test_app.conf[name] = before[name]
        pytest.fail(
            "this test left Celery changed (restored now; was, is): "
            + "; ".join(f"{k}: {was!r}, {now!r}" for k, (was, now) in changed.items())
        )


@pytest.fixture
def iron(fake_iron: FakeIron) -> FakeIron:
    """The running fake Iron; the ``IRON_KYC_*`` settings point at it during the test."""
    return fake_iron


@pytest.fixture
def sandbox_iron(iron: FakeIron, settings: Any) -> FakeIron:
    """:func:`iron`, with sandbox actions on (``IRON_KYC_SANDBOX_ACTIONS = True``)."""
    settings.IRON_KYC_SANDBOX_ACTIONS = True
    return iron


@pytest.fixture
def no_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """After the test: no secret, API key, signature or whole body in any log record.

    Records every level from DEBUG up. What to look for: :data:`tests.support.NEVER_LOGGED`
    and what the test signed with :func:`tests.support.signed_headers`.
    """
    caplog.set_level(logging.DEBUG)
    support.SENT.clear()
    yield
    logged = _logged(caplog)
    for value in [*support.NEVER_LOGGED, *support.SENT]:
        assert value not in logged, f"{value[:20]!r}... was logged"


@pytest.fixture
def no_personal_data_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """After the test: none of the values the test put in this list in any log record.

    The test lists the personal data it uses (emails, names, review comments, requirement
    descriptions): logs carry ids and statuses only. Records every level from DEBUG up, of
    the app's loggers and every other (Celery's, urllib3's, the fake Iron's), with their
    tracebacks.
    """
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django_iron_kyc")
    personal: list[str] = []
    yield personal
    logged = _logged(caplog)
    assert personal, "the test listed no personal data to look for"
    for value in personal:
        assert value not in logged, f"{value!r} was logged"


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record captured in the test's set-up, call and teardown, as a handler would write
    it (with its traceback, if any). ``caplog.records`` alone, read in a fixture's teardown,
    holds only the teardown's records."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    records = [r for when in ("setup", "call", "teardown") for r in caplog.get_records(when)]
    return "\n".join(formatter.format(record) for record in records)


@pytest.fixture
def worker_app() -> Iterator[Celery]:
    """A non-eager app with its own queue, current while a real worker consumes it.

    The broker is ``memory://`` unless ``CELERY_BROKER_URL`` is set in the environment
    (e.g. ``redis://127.0.0.1:6379/3``): then the tasks travel through that broker.
    """
    app = Celery("iron_kyc_worker_test", set_as_current=False)
    app.conf.update(
        broker_url=os.environ.get("CELERY_BROKER_URL", "memory://"),
        result_backend="cache+memory://",
        task_always_eager=False,
        task_default_queue=f"iron-kyc-test-{uuid.uuid4().hex}",
        broker_connection_retry_on_startup=False,
        worker_hijack_root_logger=False,
        broker_transport_options={"polling_interval": 0.05},
    )
    app.set_current()
    try:
        with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False):
            yield app
    finally:
        # start_worker made the worker app current and default (threads use the default).
        test_app.set_current()
        test_app.set_default()
