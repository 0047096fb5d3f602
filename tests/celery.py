"""The test host project's Celery app, configured from Django settings (``CELERY_*``).

``tests/__init__.py`` imports it, as a Django project's package does, so the app's shared
tasks bind to it: eager in unit tests (``CELERY_TASK_ALWAYS_EAGER``); the worker tests in
``tests/test_celery_worker.py`` start a real worker on an app of their own.
"""

import contextlib
import os
from collections.abc import Iterator
from typing import Any
from unittest import mock

from celery import Celery

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["django_iron_kyc"])

DEAD_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@contextlib.contextmanager
def broker_down(**conf: Any) -> Iterator[Celery]:
    """A Celery app, not eager, whose broker nothing listens to, current while in use.

    ``conf`` adds to its configuration (e.g. shorter connection timeouts). Without
    CELERY_BROKER_URL in the environment meanwhile: Celery takes it over any broker_url
    setting, so with it set (as in CI) the broker would be up.
    """
    with mock.patch.dict(os.environ):
        os.environ.pop("CELERY_BROKER_URL", None)
        down = Celery("iron_kyc_broker_down", set_as_current=False)
        down.conf.update(broker_url=DEAD_BROKER_URL, task_always_eager=False, **conf)
        assert down.conf.broker_write_url == DEAD_BROKER_URL
        down.set_current()
        try:
            yield down
        finally:
            app.set_current()
            down.close()
