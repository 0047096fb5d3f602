"""The Celery app of the benchmark worker (``celery -A benchmarks.celery_app worker``)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.worker_settings")

app = Celery("iron_kyc_bench")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["django_iron_kyc"])
