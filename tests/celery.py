"""The test host project's Celery app, configured from Django settings (``CELERY_*``).

``tests/__init__.py`` imports it, as a Django project's package does, so the app's shared
tasks bind to it: eager in unit tests (``CELERY_TASK_ALWAYS_EAGER``); the worker tests in
``tests/test_celery_worker.py`` start a real worker on an app of their own.
"""

from celery import Celery

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["django_iron_kyc"])
