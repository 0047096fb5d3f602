"""The test host project's Celery app, configured from Django settings (CELERY_*)."""

from celery import Celery

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["django_iron_kyc"])
