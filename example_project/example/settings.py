"""Settings of the django-iron-kyc example project.

With no environment variables at all, everything runs on one machine:

- the database is a SQLite file, ``example_project/db.sqlite3``;
- Celery runs tasks in-process (``CELERY_TASK_ALWAYS_EAGER``), no broker or worker needed;
- Iron is the fake from ``django_iron_kyc.testing`` on ``http://127.0.0.1:8765`` (what
  ``python -m django_iron_kyc.testing`` and ``manage.py iron_kyc_devserver`` start), with the
  fake's own API key and webhook secret.

The same settings switch to real services by environment variables only:

==============================  ==================================================================
``DATABASE_URL``                e.g. ``postgres://postgres@127.0.0.1:5432/iron_example``
                                (needs ``dj-database-url`` and ``psycopg[binary]``)
``CELERY_BROKER_URL``           e.g. ``redis://127.0.0.1:6379/0``: tasks go to a real worker
                                (``celery -A example worker --beat``; needs ``redis``)
``IRON_KYC_BASE_URL``           ``https://api.sandbox.iron.xyz`` for Iron's real sandbox
``IRON_KYC_API_KEY``            your sandbox API key (required once the URL is not loopback)
``IRON_KYC_WEBHOOK_SECRET``     the secret Iron shows for your webhook
``IRON_KYC_SANDBOX_ACTIONS``    ``0``/``1`` to force the admin's sandbox buttons off/on
``DJANGO_SECRET_KEY``           anything long and random outside your own machine
``DJANGO_DEBUG``                ``0`` to turn debug off (then set ``DJANGO_ALLOWED_HOSTS``)
``DJANGO_ALLOWED_HOSTS``        comma-separated host names
``DJANGO_LOG_LEVEL``            level of the ``django_iron_kyc`` logger (default ``INFO``)
==============================  ==================================================================

The demo (``manage.py iron_kyc_demo``) and the exploring server (``iron_kyc_devserver``)
always use a fake Iron, in-process Celery and a SQLite file of their own, whatever is set.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from django_iron_kyc.tasks import BEAT_SCHEDULE as IRON_KYC_BEAT_SCHEDULE
from django_iron_kyc.validators import is_loopback_host

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


def env_bool(name: str, default: bool | None) -> bool | None:
    value = env(name).lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1 or 0).")


# --- Django -------------------------------------------------------------------------------

DEBUG = bool(env_bool("DJANGO_DEBUG", True))
# Only for this example on your own machine; DJANGO_SECRET_KEY anywhere else.
SECRET_KEY = env("DJANGO_SECRET_KEY", "example-project-not-secret-" + "x" * 40)
ALLOWED_HOSTS = env("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_iron_kyc",
    "accounts",
    "demo",
]
AUTH_USER_MODEL = "accounts.User"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "example.urls"
WSGI_APPLICATION = "example.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
# A user who logs in lands on their own verification page (django-iron-kyc's iron_kyc:verify).
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "iron_kyc:verify"

# --- database -----------------------------------------------------------------------------

# SQLite, tuned for a web server, a webhook and a worker writing at the same time: wait for
# the lock instead of failing, and take it when a transaction starts (no upgrade deadlocks).
SQLITE_OPTIONS = {"timeout": 20, "transaction_mode": "IMMEDIATE"}

if env("DATABASE_URL"):
    try:
        import dj_database_url
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImproperlyConfigured(
            "DATABASE_URL is set: pip install dj-database-url 'psycopg[binary]'"
        ) from exc
    DATABASES = {"default": dj_database_url.parse(env("DATABASE_URL"), conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
            "OPTIONS": dict(SQLITE_OPTIONS),
        }
    }

# --- Celery -------------------------------------------------------------------------------

CELERY_BROKER_URL = env("CELERY_BROKER_URL", "memory://")
# No broker given: run every task in-process, at once (errors propagate to the caller).
CELERY_TASK_ALWAYS_EAGER = not env("CELERY_BROKER_URL")
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# django-iron-kyc's poll sweep, every minute (run beat: `celery -A example worker --beat`).
CELERY_BEAT_SCHEDULE = {**IRON_KYC_BEAT_SCHEDULE}

# --- django-iron-kyc ----------------------------------------------------------------------

FAKE_IRON_URL = "http://127.0.0.1:8765"
# The fake's own credentials (django_iron_kyc.testing.FakeIron's defaults): not secrets.
FAKE_IRON_API_KEY = "test-api-key-d0-not-log"
FAKE_IRON_WEBHOOK_SECRET = "test_secret"

IRON_KYC_BASE_URL = env("IRON_KYC_BASE_URL", FAKE_IRON_URL)
_talks_to_fake = is_loopback_host(urlsplit(IRON_KYC_BASE_URL).hostname)
# Against a fake on loopback the fake's credentials are the defaults; against Iron there are
# none, and `manage.py check` says so (iron_kyc.W004 / W001) rather than sending a wrong key.
IRON_KYC_API_KEY = env("IRON_KYC_API_KEY", FAKE_IRON_API_KEY if _talks_to_fake else "")
IRON_KYC_WEBHOOK_SECRET = env(
    "IRON_KYC_WEBHOOK_SECRET", FAKE_IRON_WEBHOOK_SECRET if _talks_to_fake else ""
)
# None: on against the sandbox host or loopback only (never against production).
IRON_KYC_SANDBOX_ACTIONS = env_bool("IRON_KYC_SANDBOX_ACTIONS", None)

# --- logging ------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "django_iron_kyc": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", "INFO")},
        "accounts": {"handlers": ["console"], "level": "INFO"},
    },
}
