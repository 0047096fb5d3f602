"""The example project's Celery app, configured from the ``CELERY_*`` Django settings.

Without ``CELERY_BROKER_URL`` tasks run in-process (eager). With it, start a worker that
also runs beat (the poll sweep every minute), from ``example_project/``::

    CELERY_BROKER_URL=redis://127.0.0.1:6379/0 celery -A example worker --beat --loglevel=info
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")

app = Celery("example")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
