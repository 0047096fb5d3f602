"""WSGI entry point of the benchmark host project (``gunicorn benchmarks.wsgi``)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
application = get_wsgi_application()

# As a host project does: the Celery app the deferred webhook view sends its tasks with.
from benchmarks.celery_app import app as celery_app  # noqa: E402, F401
