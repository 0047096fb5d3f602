"""Suite-wide guards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import _state as celery_state

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
    test far away then finds no request at Iron (tests/test_lifecycle_postgres.py did, after
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
