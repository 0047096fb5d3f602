"""Settings of the Celery worker that ``benchmarks.worker_creation`` starts.

The benchmark host project with a real broker (Redis, database 7 unless
``BENCH_BROKER_URL`` says otherwise) and the fake Iron the benchmark runs.
"""

from __future__ import annotations

import os

from benchmarks.settings import *  # noqa: F403

CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/7")
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("BENCH_QUEUE", "iron-kyc-bench")
CELERY_RESULT_BACKEND = None
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
IRON_KYC_BASE_URL = os.environ["IRON_KYC_BASE_URL"]
