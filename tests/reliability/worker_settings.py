"""Settings of the Celery worker subprocesses started by ``test_worker_kill.py``.

The test host project's settings, pointed at the database the test run created (the
worker must see the same rows), the fake Iron of the test, and a Redis broker on which an
unacknowledged task comes back quickly when its worker dies (a short visibility timeout,
restored every second).
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

DATABASES["default"]["NAME"] = os.environ["IRON_RELIABILITY_DB_NAME"]

IRON_KYC_BASE_URL = os.environ["IRON_KYC_BASE_URL"]
IRON_KYC_API_KEY = os.environ["IRON_KYC_API_KEY"]
IRON_KYC_MAX_RETRIES = 0

CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_URL = os.environ["IRON_RELIABILITY_BROKER_URL"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_DEFAULT_QUEUE = os.environ["IRON_RELIABILITY_QUEUE"]
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 2,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
