"""The example project's package: settings, URLs, WSGI and the Celery app."""

# Load the Celery app with Django, so django-iron-kyc's shared tasks bind to it.
from .celery import app as celery_app

__all__ = ["celery_app"]
