"""System checks of what the app needs around it: the project's Celery app.

Each problem has a stable ID and a hint, as the settings' checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery.app import default_app
from django.apps import AppConfig
from django.core.checks import CheckMessage, Tags, Warning, register

__all__ = ["check_celery_app"]


@register(Tags.compatibility, "iron_kyc")
def check_celery_app(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Warn when the app's tasks would go to Celery's own fallback app (``iron_kyc.W003``).

    A shared task runs on the app that is current when it is called; in a web server's
    request threads that is Celery's default app. A Django project's Celery app becomes the
    default once it is imported (the standard ``celery.py``, imported by the project
    package's ``__init__.py``). Without one, Celery makes a fallback app that never reads
    the Django settings: ``CELERY_TASK_ALWAYS_EAGER`` is ignored and every task is
    published to a broker on localhost, or lost.
    """
    # Celery builds its fallback with no fix-ups; a project's app has the Django fix-up.
    if default_app and not (
        default_app.main == "default" and not getattr(default_app, "fixups", ())
    ):
        return []
    return [
        Warning(
            "django-iron-kyc's Celery tasks would go to Celery's unconfigured default app: "
            "CELERY_* settings (CELERY_TASK_ALWAYS_EAGER included) are ignored and tasks are "
            "sent to a broker on localhost, where nothing may run them.",
            hint="Add the standard celery.py to your project package (app = Celery(...); "
            "app.config_from_object('django.conf:settings', namespace='CELERY'); "
            "app.autodiscover_tasks()) and import it in the package's __init__.py: "
            "from .celery import app as celery_app. See the README: Installation.",
            id="iron_kyc.W003",
        )
    ]
